"""Device groups and the many-to-many memberships between groups and devices.

Joining and leaving a group are device events (``group_joined`` / ``group_left``)
so a device's log tells its whole story.

A group with a ``selector`` is dynamic: the devices it matches are members as well
as those put there by hand (``controller.store.labels`` keeps those rows). The
matched memberships are read-only here: adding or removing one by hand is a
``DynamicMembership`` conflict, and the calls that replace or clear memberships
change the ones made by hand only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, false, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.store.audit import AuditEntry, write_audit
from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.devices import delete_devices, fetch_device, like_pattern
from edgefleet.controller.store.errors import (
    DynamicMembership,
    GroupConflict,
    GroupNotFound,
    MembershipNotFound,
)
from edgefleet.controller.store.labels import chunks, log_membership, refresh_group
from edgefleet.controller.store.schema import device_group_members, device_groups
from edgefleet.controller.store.scope import Scope

_member_count = (
    select(func.count())
    .where(device_group_members.c.group_id == device_groups.c.group_id)
    .correlate(device_groups)
    .scalar_subquery()
    .label("device_count")
)
GROUP_COLUMNS = [*device_groups.c, _member_count]


async def fetch_group(
    connection: AsyncConnection, group_id: int, scope: Scope = None
) -> dict[str, Any]:
    if scope is not None and group_id not in scope:
        raise GroupNotFound(group_id)
    row = (
        (
            await connection.execute(
                select(*GROUP_COLUMNS).where(device_groups.c.group_id == group_id)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise GroupNotFound(group_id)
    return dict(row)


async def _member_ids(connection: AsyncConnection, group_id: int) -> list[int]:
    rows = await connection.scalars(
        select(device_group_members.c.device_id).where(device_group_members.c.group_id == group_id)
    )
    return list(rows)


async def _groups_of(
    connection: AsyncConnection, device_id: int, scope: Scope = None, by_hand: bool = False
) -> list[dict[str, Any]]:
    """The device's groups; ``by_hand``: only those it was put in by hand."""
    query = (
        select(*GROUP_COLUMNS)
        .join(device_group_members, device_group_members.c.group_id == device_groups.c.group_id)
        .where(device_group_members.c.device_id == device_id)
        .order_by(device_groups.c.name)
    )
    if scope is not None:
        query = query.where(device_groups.c.group_id.in_(scope))
    if by_hand:
        query = query.where(device_group_members.c.static)
    rows = await connection.execute(query)
    return [dict(row) for row in rows.mappings()]


async def _membership(connection: AsyncConnection, group_id: int, device_id: int) -> Any:
    """The membership row (``static``, ``matched``), or None."""
    result = await connection.execute(
        select(device_group_members.c.static, device_group_members.c.matched).where(
            device_group_members.c.group_id == group_id,
            device_group_members.c.device_id == device_id,
        )
    )
    return result.first()


async def _drop_by_hand(
    connection: AsyncConnection, group_id: int, device_ids: Iterable[int] | None = None
) -> list[int]:
    """End the memberships made by hand (of ``device_ids``, or all); a device the
    selector also matches stays a member. Returns the devices that left."""
    where = [device_group_members.c.group_id == group_id]
    if device_ids is not None:
        where.append(device_group_members.c.device_id.in_(list(device_ids)))
    await connection.execute(
        update(device_group_members)
        .where(*where, device_group_members.c.matched)
        .values(static=False)
    )
    leaving = list(
        await connection.scalars(
            select(device_group_members.c.device_id).where(
                *where, device_group_members.c.matched == false()
            )
        )
    )
    if leaving:
        await connection.execute(
            delete(device_group_members).where(
                device_group_members.c.group_id == group_id,
                device_group_members.c.device_id.in_(leaving),
            )
        )
    return leaving


class GroupStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, values: dict[str, Any], audit: AuditEntry | None = None
    ) -> dict[str, Any]:
        now = utcnow()
        row = {"description": "", **values, "created_at": now, "updated_at": now}
        try:
            async with self._db.begin() as connection:
                await connection.execute(insert(device_groups), row)
                if row.get("selector") is not None:
                    await refresh_group(connection, row)
                await write_audit(connection, audit)
                return await fetch_group(connection, row["group_id"])
        except IntegrityError as exc:
            raise GroupConflict(f"a group named {values['name']!r} already exists") from exc

    async def get(self, group_id: int, scope: Scope = None) -> dict[str, Any]:
        async with self._db.read() as connection:
            return await fetch_group(connection, group_id, scope)

    async def list(
        self, text: str | None, page: int, per_page: int, scope: Scope = None
    ) -> tuple[list[dict[str, Any]], int]:
        conditions = []
        if scope is not None:
            conditions.append(device_groups.c.group_id.in_(scope))
        if text:
            conditions.append(device_groups.c.name.like(like_pattern(text), escape="\\"))
        async with self._db.read() as connection:
            total = await connection.scalar(
                select(func.count()).select_from(device_groups).where(*conditions)
            )
            rows = await connection.execute(
                select(*GROUP_COLUMNS)
                .where(*conditions)
                .order_by(device_groups.c.name)
                .limit(per_page)
                .offset((page - 1) * per_page)
            )
            return [dict(row) for row in rows.mappings()], total or 0

    async def update(
        self, group_id: int, changes: dict[str, Any], audit: AuditEntry | None = None
    ) -> dict[str, Any]:
        """A changed ``selector`` re-matches the fleet in the same transaction. The row
        is updated before anything is read (see ``controller.store.labels``)."""
        try:
            async with self._db.begin() as connection:
                if changes:
                    result = await connection.execute(
                        update(device_groups)
                        .where(device_groups.c.group_id == group_id)
                        .values(**changes, updated_at=utcnow())
                    )
                    if result.rowcount == 0:
                        raise GroupNotFound(group_id)
                group = await fetch_group(connection, group_id)
                if "selector" in changes:
                    await refresh_group(connection, group)
                    group = await fetch_group(connection, group_id)
                await write_audit(connection, audit)
                return group
        except IntegrityError as exc:
            raise GroupConflict(f"a group named {changes.get('name')!r} already exists") from exc

    async def delete(self, group_id: int, audit: AuditEntry | None = None) -> None:
        """Delete the group; its devices stay, each logging that it left."""
        async with self._db.begin() as connection:
            group = await fetch_group(connection, group_id)
            await log_membership(
                connection, "group_left", await _member_ids(connection, group_id), group
            )
            await connection.execute(
                delete(device_group_members).where(device_group_members.c.group_id == group_id)
            )
            await connection.execute(
                delete(device_groups).where(device_groups.c.group_id == group_id)
            )
            await write_audit(connection, audit)

    async def by_resource(self, namespace: str, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The groups mirroring the DeviceGroup resources ``names`` in ``namespace``."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        async with self._db.read() as connection:
            rows = await connection.execute(
                select(*GROUP_COLUMNS).where(
                    device_groups.c.k8s_namespace == namespace,
                    device_groups.c.k8s_name.in_(wanted),
                )
            )
            return {row["k8s_name"]: dict(row) for row in rows.mappings()}

    async def member_ids(self, group_id: int) -> list[int]:
        """Every member: put there by hand or matched by the selector."""
        async with self._db.read() as connection:
            await fetch_group(connection, group_id)
            return await _member_ids(connection, group_id)

    async def memberships_of(self, device_ids: Sequence[int]) -> set[tuple[int, int]]:
        """(device id, group id) of every membership of these devices, by hand or
        matched; a device that does not exist has none."""
        pairs: set[tuple[int, int]] = set()
        async with self._db.read() as connection:
            for part in chunks(device_ids):
                rows = await connection.execute(
                    select(device_group_members.c.device_id, device_group_members.c.group_id).where(
                        device_group_members.c.device_id.in_(part)
                    )
                )
                pairs |= {(row.device_id, row.group_id) for row in rows}
        return pairs

    async def by_hand_ids(self, group_id: int) -> list[int]:
        """The members put there by hand (in Kubernetes mode: the Devices that name
        the group in ``spec.groups``)."""
        async with self._db.read() as connection:
            await fetch_group(connection, group_id)
            rows = await connection.scalars(
                select(device_group_members.c.device_id).where(
                    device_group_members.c.group_id == group_id, device_group_members.c.static
                )
            )
            return list(rows)

    async def refuse_if_matched(self, group_id: int, device_id: int) -> None:
        """``DynamicMembership`` if the group's selector matches the device: asked
        before a change by hand reaches the resources (Kubernetes mode)."""
        async with self._db.read() as connection:
            membership = await _membership(connection, group_id, device_id)
        if membership is not None and membership.matched:
            raise DynamicMembership(group_id, device_id)

    async def by_hand_of_device(self, device_id: int) -> list[int]:
        """The groups the device was put in by hand, by id."""
        async with self._db.read() as connection:
            return [g["group_id"] for g in await _groups_of(connection, device_id, by_hand=True)]

    async def is_member(self, group_id: int, device_id: int, scope: Scope = None) -> bool:
        async with self._db.read() as connection:
            await fetch_group(connection, group_id, scope)
            await fetch_device(connection, device_id, scope)
            found = await connection.scalar(
                select(func.count()).where(
                    device_group_members.c.group_id == group_id,
                    device_group_members.c.device_id == device_id,
                )
            )
            return bool(found)

    async def add_member(
        self, group_id: int, device_id: int, audit: AuditEntry | None = None
    ) -> bool:
        """Put the device in the group; ``False`` when it already was (nothing changes).
        A device the group's selector matches is a member by its labels: 409."""
        try:
            async with self._db.begin() as connection:
                group = await fetch_group(connection, group_id)
                await fetch_device(connection, device_id)
                already = await _membership(connection, group_id, device_id)
                if already is not None and already.matched:
                    raise DynamicMembership(group_id, device_id)
                if not already:
                    await connection.execute(
                        insert(device_group_members),
                        {"group_id": group_id, "device_id": device_id, "created_at": utcnow()},
                    )
                    await log_membership(connection, "group_joined", [device_id], group)
                await write_audit(connection, audit)
                return not already
        except IntegrityError:
            return False  # a concurrent request added the same membership first

    async def remove_member(
        self, group_id: int, device_id: int, audit: AuditEntry | None = None
    ) -> None:
        """Take the device out; one the group's selector matches stays: 409."""
        async with self._db.begin() as connection:
            group = await fetch_group(connection, group_id)
            await fetch_device(connection, device_id)
            membership = await _membership(connection, group_id, device_id)
            if membership is None:
                raise MembershipNotFound(group_id, device_id)
            if membership.matched:
                raise DynamicMembership(group_id, device_id)
            await connection.execute(
                delete(device_group_members).where(
                    device_group_members.c.group_id == group_id,
                    device_group_members.c.device_id == device_id,
                )
            )
            await log_membership(connection, "group_left", [device_id], group)
            await write_audit(connection, audit)

    async def clear(
        self, group_id: int, delete_members: bool, audit: AuditEntry | None = None
    ) -> tuple[int, int]:
        """End the memberships made by hand (the selector's stay: they follow the
        labels); with ``delete_members`` every member, matched ones too, is deleted.

        Returns (memberships removed, devices deleted)."""
        async with self._db.begin() as connection:
            group = await fetch_group(connection, group_id)
            await write_audit(connection, audit)
            if delete_members:
                members = await _member_ids(connection, group_id)
                if members:
                    await delete_devices(connection, members)
                return len(members), len(members)
            leaving = await _drop_by_hand(connection, group_id)
            await log_membership(connection, "group_left", leaving, group)
            return len(leaving), 0

    async def of_device(self, device_id: int, scope: Scope = None) -> list[dict[str, Any]]:
        """The device's groups; with a scope, only those in it."""
        async with self._db.read() as connection:
            await fetch_device(connection, device_id, scope)
            return await _groups_of(connection, device_id, scope)

    async def replace_of_device(
        self,
        device_id: int,
        group_ids: list[int],
        scope: Scope = None,
        audit: AuditEntry | None = None,
    ) -> list[dict[str, Any]]:
        """Make the device's groups in ``scope`` that it was put in by hand exactly
        ``group_ids``; its groups outside the scope stay, and so do those its labels
        put it in (a group it matches and is named here is one it stays in by hand
        when its labels change). Unknown groups change nothing."""
        wanted = set(group_ids)
        async with self._db.begin() as connection:
            await fetch_device(connection, device_id, scope)
            groups = {gid: await fetch_group(connection, gid, scope) for gid in wanted}
            current = {
                g["group_id"]: g
                for g in await _groups_of(connection, device_id, scope, by_hand=True)
            }
            left = []
            for gid in sorted(current.keys() - wanted):
                if await _drop_by_hand(connection, gid, [device_id]):
                    left.append(gid)
            now = utcnow()
            joined = []
            for gid in sorted(wanted - current.keys()):
                if await _membership(connection, gid, device_id) is None:
                    joined.append(gid)
                    await connection.execute(
                        insert(device_group_members),
                        {"device_id": device_id, "group_id": gid, "created_at": now},
                    )
                else:  # matched by the selector already: now by hand too
                    await connection.execute(
                        update(device_group_members)
                        .where(
                            device_group_members.c.device_id == device_id,
                            device_group_members.c.group_id == gid,
                        )
                        .values(static=True)
                    )
            for gid in left:
                await log_membership(connection, "group_left", [device_id], current[gid])
            for gid in joined:
                await log_membership(connection, "group_joined", [device_id], groups[gid])
            await write_audit(connection, audit)
            return await _groups_of(connection, device_id, scope)

    async def remove_all_of_device(
        self, device_id: int, scope: Scope = None, audit: AuditEntry | None = None
    ) -> int:
        """Take the device out of all the groups it was put in by hand (with a scope:
        of those in it); the groups whose selector it matches keep it. Returns how
        many memberships by hand ended."""
        async with self._db.begin() as connection:
            await fetch_device(connection, device_id, scope)
            groups = await _groups_of(connection, device_id, scope, by_hand=True)
            for group in groups:
                if await _drop_by_hand(connection, group["group_id"], [device_id]):
                    await log_membership(connection, "group_left", [device_id], group)
            await write_audit(connection, audit)
            return len(groups)
