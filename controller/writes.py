"""Every change the northbound makes to devices, groups and memberships.

One path for each change: who may make it (the caller's scope, checked before
anything is written), the resource mirror (Kubernetes mode: the resources are the
truth, and a change the API server refuses reaches neither side), then the
database with the change's audit entry in the same transaction, then its effects
on live sessions (a disabled or deleted device is disconnected; a device that
joined or left a group with a configuration is sent its new one). A change that
fails is audited too, on its own. The REST handlers only translate requests into
these calls.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from edgefleet.controller.access.principal import Caller
from edgefleet.controller.device_link import DeviceLink
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.membership_changes import MembershipChanges
from edgefleet.controller.mirror import ResourceMirror
from edgefleet.controller.passwords import generate_password, hash_password
from edgefleet.controller.store import (
    AuditEntry,
    DeviceConflict,
    DeviceNotFound,
    GroupConflict,
    GroupNotFound,
    Scope,
    Store,
    StoreError,
)

log = logging.getLogger("edgefleet.audit")

DescribeFailure = Callable[[BaseException], tuple[str, int]]
"""An exception as the API answers it: (error type, HTTP status)."""


class Auditor:
    """Writes the audit entry of a change that failed (a successful one goes in
    with the change itself), and entries of things that are no database change,
    such as commands."""

    def __init__(self, store: Store, describe: DescribeFailure) -> None:
        self._store = store
        self.describe = describe

    @asynccontextmanager
    async def change(
        self,
        caller: Caller,
        action: str,
        target_type: str,
        target_id: object = None,
        fields: Iterable[str] = (),
    ) -> AsyncIterator[AuditEntry]:
        """The entry to write with the change; if the block raises, it is written
        as a failure, with the error type and status the API answers with."""
        entry = caller.entry(action, target_type, target_id, fields)
        try:
            yield entry
        except Exception as exc:
            await self.append(entry.failed(*self.describe(exc)))
            raise

    async def append(self, entry: AuditEntry) -> None:
        try:
            await self._store.audit.append(entry)
        except StoreError as exc:
            self.lost(entry, exc)

    @staticmethod
    def lost(entry: AuditEntry, exc: StoreError) -> None:
        """The database is away: the change failed with it; the log line stays."""
        log.warning("audit entry not written", extra={**entry.row(), "at": str(entry.at),
                    "error": type(exc).__name__})  # fmt: skip


def _outside(scope: Scope, group_ids: Iterable[int]) -> list[int]:
    """Those of ``group_ids`` that ``scope`` does not reach."""
    return [] if scope is None else [g for g in group_ids if g not in scope]


class FleetWrites:
    def __init__(
        self,
        store: Store,
        mirror: ResourceMirror,
        link: DeviceLink,
        ids: SnowflakeGenerator,
        bcrypt_rounds: int,
        auditor: Auditor,
        memberships: MembershipChanges,
    ) -> None:
        self._store = store
        self._mirror = mirror
        self._link = link
        self._ids = ids
        self._bcrypt_rounds = bcrypt_rounds
        self._audit = auditor
        self._memberships = memberships

    async def _device_in(self, device_id: int, scope: Scope) -> None:
        """Before the mirror is touched: a device outside the scope is not found."""
        if scope is not None:
            await self._store.devices.get(device_id, scope)

    @staticmethod
    def _group_in(group_id: int, scope: Scope) -> None:
        if scope is not None and group_id not in scope:
            raise GroupNotFound(group_id)

    # --- devices ---------------------------------------------------------------------------

    async def register_device(
        self, caller: Caller, values: dict[str, Any], password: str | None
    ) -> tuple[dict[str, Any], str]:
        """The new device's row and its password (the one given, or a generated one)."""
        device_id = self._ids.next_id()
        fields = [*values, *(["password"] if password else [])]
        async with self._audit.change(
            caller, "register_device", "device", device_id, fields
        ) as entry:
            caller.principal.everywhere("devices:write")
            password = password or generate_password()
            values = {
                **values,
                "secret": await hash_password(password, self._bcrypt_rounds),
                "device_id": device_id,
            }
            # Its labels may put it in dynamic groups at once.
            memberships = await self._memberships.of_devices([device_id])
            values |= await self._mirror.device_created(values, password)
            try:
                row = await self._store.devices.create(values, entry)
            except DeviceConflict as conflict:
                # Kubernetes mode: the operator may have inserted this very device already.
                try:
                    row = await self._store.devices.get(device_id)
                except DeviceNotFound:
                    raise conflict from None
                await self._audit.append(entry)
        await self._memberships.settle(memberships)
        return row, password

    async def update_device(
        self, caller: Caller, device_id: int, changes: dict[str, Any], password: str | None
    ) -> dict[str, Any]:
        """``changes`` of the device's columns; ``password``, when given, replaces it."""
        fields = [*changes, *(["password"] if password is not None else [])]
        async with self._audit.change(
            caller, "update_device", "device", device_id, fields
        ) as entry:
            await self._device_in(device_id, caller.principal.scope("devices:write"))
            changes = dict(changes)
            await self._mirror.device_changed(device_id, changes, password)
            if password is not None:
                changes["secret"] = await hash_password(password, self._bcrypt_rounds)
            relabelled = None
            if "labels" in changes:
                relabelled = await self._memberships.of_devices([device_id])
            row = await self._store.devices.update(device_id, changes, entry)
        await self._memberships.settle(relabelled)
        if changes.get("disabled"):
            await self._link.disconnect(device_id, "disabled")
        elif password is not None:
            # The session logged in with the old password: it must not outlive it.
            await self._link.disconnect(device_id, "credentials_changed")
        return row

    async def delete_device(self, caller: Caller, device_id: int) -> None:
        async with self._audit.change(caller, "delete_device", "device", device_id) as entry:
            await self._device_in(device_id, caller.principal.scope("devices:write"))
            await self._mirror.device_deleted(device_id)
            await self._store.devices.delete(device_id, entry)
        await self._link.disconnect(device_id, "deleted")

    # --- groups ------------------------------------------------------------------------------

    async def create_group(self, caller: Caller, values: dict[str, Any]) -> dict[str, Any]:
        group_id = self._ids.next_id()
        async with self._audit.change(caller, "create_group", "group", group_id, values) as entry:
            caller.principal.everywhere("groups:write")
            values = {**values, "group_id": group_id}
            values |= await self._mirror.group_created(values)
            try:
                return await self._store.groups.create(values, entry)
            except GroupConflict as conflict:
                # Kubernetes mode: the operator may have inserted this very group already.
                try:
                    group = await self._store.groups.get(group_id)
                except GroupNotFound:
                    raise conflict from None
                await self._audit.append(entry)
                return group

    async def update_group(
        self, caller: Caller, group_id: int, changes: dict[str, Any]
    ) -> dict[str, Any]:
        async with self._audit.change(caller, "update_group", "group", group_id, changes) as entry:
            self._group_in(group_id, caller.principal.scope("groups:write"))
            reselected = None
            if "selector" in changes:
                reselected = await self._memberships.of_group(group_id)
            await self._mirror.group_changed(group_id, changes)
            group = await self._store.groups.update(group_id, changes, entry)
        await self._memberships.settle(reselected)
        return group

    async def delete_group(self, caller: Caller, group_id: int) -> None:
        async with self._audit.change(caller, "delete_group", "group", group_id) as entry:
            self._group_in(group_id, caller.principal.scope("groups:write"))
            members = await self._memberships.of_group(group_id)
            await self._mirror.group_deleted(group_id)
            await self._store.groups.delete(group_id, entry)
        await self._memberships.settle(members)

    # --- memberships -------------------------------------------------------------------------

    async def replace_groups(
        self, caller: Caller, device_id: int, group_ids: list[int]
    ) -> list[dict[str, Any]]:
        """Make the device's groups exactly ``group_ids`` (unknown groups change
        nothing). A caller limited to some groups changes only those: the device's
        other groups, which it cannot see, stay."""
        async with self._audit.change(
            caller, "replace_device_groups", "device", device_id, ["group_ids"]
        ) as entry:
            scope = caller.principal.scope("groups:write")
            await self._device_in(device_id, scope)
            for group_id in group_ids:
                self._group_in(group_id, scope)
            kept = await self._groups_outside(device_id, scope)
            memberships = await self._memberships.of_devices([device_id])
            await self._mirror.device_groups_changed(device_id, sorted({*group_ids, *kept}))
            groups = await self._store.groups.replace_of_device(device_id, group_ids, scope, entry)
        await self._memberships.settle(memberships)
        return groups

    async def leave_all_groups(self, caller: Caller, device_id: int) -> int:
        async with self._audit.change(caller, "remove_device_groups", "device", device_id) as entry:
            scope = caller.principal.scope("groups:write")
            await self._device_in(device_id, scope)
            kept = await self._groups_outside(device_id, scope)
            memberships = await self._memberships.of_devices([device_id])
            await self._mirror.device_groups_changed(device_id, kept)
            removed = await self._store.groups.remove_all_of_device(device_id, scope, entry)
        await self._memberships.settle(memberships)
        return removed

    async def _groups_outside(self, device_id: int, scope: Scope) -> list[int]:
        if scope is None:
            return []
        return _outside(scope, await self._store.groups.by_hand_of_device(device_id))

    async def add_member(self, caller: Caller, group_id: int, device_id: int) -> None:
        target = f"{group_id}/{device_id}"
        async with self._audit.change(caller, "add_membership", "membership", target) as entry:
            scope = caller.principal.scope("groups:write")
            self._group_in(group_id, scope)
            await self._device_in(device_id, scope)
            await self._store.groups.refuse_if_matched(group_id, device_id)
            memberships = await self._memberships.of_devices([device_id])
            await self._mirror.member_added(group_id, device_id)
            await self._store.groups.add_member(group_id, device_id, entry)
        await self._memberships.settle(memberships)

    async def remove_member(self, caller: Caller, group_id: int, device_id: int) -> None:
        target = f"{group_id}/{device_id}"
        async with self._audit.change(caller, "remove_membership", "membership", target) as entry:
            scope = caller.principal.scope("groups:write")
            self._group_in(group_id, scope)
            await self._device_in(device_id, scope)
            await self._store.groups.refuse_if_matched(group_id, device_id)
            memberships = await self._memberships.of_devices([device_id])
            await self._mirror.member_removed(group_id, device_id)
            await self._store.groups.remove_member(group_id, device_id, entry)
        await self._memberships.settle(memberships)

    async def clear_group(
        self, caller: Caller, group_id: int, delete_devices: bool
    ) -> tuple[int, int]:
        """Empty the group; returns (memberships removed, devices deleted)."""
        fields = ["delete_devices"] if delete_devices else []
        async with self._audit.change(caller, "clear_group", "group", group_id, fields) as entry:
            self._group_in(group_id, caller.principal.scope("groups:write"))
            if delete_devices:
                self._group_in(group_id, caller.principal.scope("devices:write"))
            members = await self._store.groups.member_ids(group_id) if delete_devices else []
            # Deleted devices need no configuration; those that only leave do.
            leaving = None if delete_devices else await self._memberships.of_group(group_id)
            await self._mirror.group_cleared(group_id, delete_devices)
            removed, deleted = await self._store.groups.clear(group_id, delete_devices, entry)
        await self._memberships.settle(leaving)
        for device_id in members:
            await self._link.disconnect(device_id, "deleted")
        return removed, deleted
