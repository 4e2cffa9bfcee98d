"""Device groups and the many-to-many memberships between groups and devices.

Joining and leaving a group are device events (``group_joined`` / ``group_left``)
so a device's log tells its whole story.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.store.audit import AuditEntry, write_audit
from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.devices import delete_devices, fetch_device, like_pattern
from edgefleet.controller.store.errors import GroupConflict, GroupNotFound, MembershipNotFound
from edgefleet.controller.store.events import record_events
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


async def _fetch_group(
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
    connection: AsyncConnection, device_id: int, scope: Scope = None
) -> list[dict[str, Any]]:
    query = (
        select(*GROUP_COLUMNS)
        .join(device_group_members, device_group_members.c.group_id == device_groups.c.group_id)
        .where(device_group_members.c.device_id == device_id)
        .order_by(device_groups.c.name)
    )
    if scope is not None:
        query = query.where(device_groups.c.group_id.in_(scope))
    rows = await connection.execute(query)
    return [dict(row) for row in rows.mappings()]


async def _log_membership(
    connection: AsyncConnection, event: str, device_ids: Iterable[int], group: dict[str, Any]
) -> None:
    detail = {"group_id": str(group["group_id"]), "group": group["name"]}
    await record_events(connection, device_ids, event, detail)


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
                await write_audit(connection, audit)
                return await _fetch_group(connection, row["group_id"])
        except IntegrityError as exc:
            raise GroupConflict(f"a group named {values['name']!r} already exists") from exc

    async def get(self, group_id: int, scope: Scope = None) -> dict[str, Any]:
        async with self._db.read() as connection:
            return await _fetch_group(connection, group_id, scope)

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
        try:
            async with self._db.begin() as connection:
                group = await _fetch_group(connection, group_id)
                if changes:
                    await connection.execute(
                        update(device_groups)
                        .where(device_groups.c.group_id == group_id)
                        .values(**changes, updated_at=utcnow())
                    )
                    group = await _fetch_group(connection, group_id)
                await write_audit(connection, audit)
                return group
        except IntegrityError as exc:
            raise GroupConflict(f"a group named {changes.get('name')!r} already exists") from exc

    async def delete(self, group_id: int, audit: AuditEntry | None = None) -> None:
        """Delete the group; its devices stay, each logging that it left."""
        async with self._db.begin() as connection:
            group = await _fetch_group(connection, group_id)
            await _log_membership(
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
        async with self._db.read() as connection:
            await _fetch_group(connection, group_id)
            return await _member_ids(connection, group_id)

    async def is_member(self, group_id: int, device_id: int, scope: Scope = None) -> bool:
        async with self._db.read() as connection:
            await _fetch_group(connection, group_id, scope)
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
        """Put the device in the group; ``False`` when it already was (nothing changes)."""
        try:
            async with self._db.begin() as connection:
                group = await _fetch_group(connection, group_id)
                await fetch_device(connection, device_id)
                already = await connection.scalar(
                    select(func.count()).where(
                        device_group_members.c.group_id == group_id,
                        device_group_members.c.device_id == device_id,
                    )
                )
                if not already:
                    await connection.execute(
                        insert(device_group_members),
                        {"group_id": group_id, "device_id": device_id, "created_at": utcnow()},
                    )
                    await _log_membership(connection, "group_joined", [device_id], group)
                await write_audit(connection, audit)
                return not already
        except IntegrityError:
            return False  # a concurrent request added the same membership first

    async def remove_member(
        self, group_id: int, device_id: int, audit: AuditEntry | None = None
    ) -> None:
        async with self._db.begin() as connection:
            group = await _fetch_group(connection, group_id)
            await fetch_device(connection, device_id)
            result = await connection.execute(
                delete(device_group_members).where(
                    device_group_members.c.group_id == group_id,
                    device_group_members.c.device_id == device_id,
                )
            )
            if result.rowcount == 0:
                raise MembershipNotFound(group_id, device_id)
            await _log_membership(connection, "group_left", [device_id], group)
            await write_audit(connection, audit)

    async def clear(
        self, group_id: int, delete_members: bool, audit: AuditEntry | None = None
    ) -> tuple[int, int]:
        """Empty the group; with ``delete_members`` its devices are deleted too.

        Returns (memberships removed, devices deleted)."""
        async with self._db.begin() as connection:
            group = await _fetch_group(connection, group_id)
            members = await _member_ids(connection, group_id)
            await write_audit(connection, audit)
            if not members:
                return 0, 0
            if delete_members:
                await delete_devices(connection, members)
                return len(members), len(members)
            await connection.execute(
                delete(device_group_members).where(device_group_members.c.group_id == group_id)
            )
            await _log_membership(connection, "group_left", members, group)
            return len(members), 0

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
        """Make the device's groups in ``scope`` exactly ``group_ids``; its groups
        outside the scope stay. Unknown groups change nothing."""
        wanted = set(group_ids)
        async with self._db.begin() as connection:
            await fetch_device(connection, device_id, scope)
            groups = {gid: await _fetch_group(connection, gid, scope) for gid in wanted}
            current = {g["group_id"]: g for g in await _groups_of(connection, device_id, scope)}
            leaving = current.keys() - wanted
            if leaving:
                await connection.execute(
                    delete(device_group_members).where(
                        device_group_members.c.device_id == device_id,
                        device_group_members.c.group_id.in_(leaving),
                    )
                )
            now = utcnow()
            joining = sorted(wanted - current.keys())
            if joining:
                await connection.execute(
                    insert(device_group_members),
                    [{"device_id": device_id, "group_id": g, "created_at": now} for g in joining],
                )
            for gid in sorted(leaving):
                await _log_membership(connection, "group_left", [device_id], current[gid])
            for gid in joining:
                await _log_membership(connection, "group_joined", [device_id], groups[gid])
            await write_audit(connection, audit)
            return await _groups_of(connection, device_id, scope)

    async def remove_all_of_device(
        self, device_id: int, scope: Scope = None, audit: AuditEntry | None = None
    ) -> int:
        """Take the device out of all its groups (with a scope: of those in it)."""
        async with self._db.begin() as connection:
            await fetch_device(connection, device_id, scope)
            groups = await _groups_of(connection, device_id, scope)
            if groups:
                await connection.execute(
                    delete(device_group_members).where(
                        device_group_members.c.device_id == device_id,
                        device_group_members.c.group_id.in_([g["group_id"] for g in groups]),
                    )
                )
            for group in groups:
                await _log_membership(connection, "group_left", [device_id], group)
            await write_audit(connection, audit)
            return len(groups)
