"""Every change the northbound makes to devices, groups and memberships.

One path for each change: the resource mirror first (Kubernetes mode: the
resources are the truth, and a change the API server refuses reaches neither
side), then the database, then its effects on live sessions (a disabled or
deleted device is disconnected). The REST handlers only translate requests into
these calls; what a change must also do — access checks and the audit log, as
they come — lives here, once.
"""

from __future__ import annotations

from typing import Any

from edgefleet.controller.device_link import DeviceLink
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.mirror import ResourceMirror
from edgefleet.controller.passwords import generate_password, hash_password
from edgefleet.controller.store import (
    DeviceConflict,
    DeviceNotFound,
    GroupConflict,
    GroupNotFound,
    Store,
)


class FleetWrites:
    def __init__(
        self,
        store: Store,
        mirror: ResourceMirror,
        link: DeviceLink,
        ids: SnowflakeGenerator,
        bcrypt_rounds: int,
    ) -> None:
        self._store = store
        self._mirror = mirror
        self._link = link
        self._ids = ids
        self._bcrypt_rounds = bcrypt_rounds

    # --- devices ---------------------------------------------------------------------------

    async def register_device(
        self, values: dict[str, Any], password: str | None
    ) -> tuple[dict[str, Any], str]:
        """The new device's row and its password (the one given, or a generated one)."""
        password = password or generate_password()
        values = {
            **values,
            "secret": await hash_password(password, self._bcrypt_rounds),
            "device_id": self._ids.next_id(),
        }
        values |= await self._mirror.device_created(values, password)
        try:
            row = await self._store.devices.create(values)
        except DeviceConflict as conflict:
            # Kubernetes mode: the operator may have inserted this very device already.
            try:
                row = await self._store.devices.get(values["device_id"])
            except DeviceNotFound:
                raise conflict from None
        return row, password

    async def update_device(
        self, device_id: int, changes: dict[str, Any], password: str | None
    ) -> dict[str, Any]:
        """``changes`` of the device's columns; ``password``, when given, replaces it."""
        changes = dict(changes)
        await self._mirror.device_changed(device_id, changes, password)
        if password is not None:
            changes["secret"] = await hash_password(password, self._bcrypt_rounds)
        row = await self._store.devices.update(device_id, changes)
        if changes.get("disabled"):
            await self._link.disconnect(device_id, "disabled")
        elif password is not None:
            # The session logged in with the old password: it must not outlive it.
            await self._link.disconnect(device_id, "credentials_changed")
        return row

    async def delete_device(self, device_id: int) -> None:
        await self._mirror.device_deleted(device_id)
        await self._store.devices.delete(device_id)
        await self._link.disconnect(device_id, "deleted")

    # --- groups ------------------------------------------------------------------------------

    async def create_group(self, values: dict[str, Any]) -> dict[str, Any]:
        values = {**values, "group_id": self._ids.next_id()}
        values |= await self._mirror.group_created(values)
        try:
            return await self._store.groups.create(values)
        except GroupConflict as conflict:
            # Kubernetes mode: the operator may have inserted this very group already.
            try:
                return await self._store.groups.get(values["group_id"])
            except GroupNotFound:
                raise conflict from None

    async def update_group(self, group_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        await self._mirror.group_changed(group_id, changes)
        return await self._store.groups.update(group_id, changes)

    async def delete_group(self, group_id: int) -> None:
        await self._mirror.group_deleted(group_id)
        await self._store.groups.delete(group_id)

    # --- memberships -------------------------------------------------------------------------

    async def replace_groups(self, device_id: int, group_ids: list[int]) -> list[dict[str, Any]]:
        """Make the device's groups exactly ``group_ids`` (unknown groups change nothing)."""
        await self._mirror.device_groups_changed(device_id, group_ids)
        return await self._store.groups.replace_of_device(device_id, group_ids)

    async def leave_all_groups(self, device_id: int) -> int:
        await self._mirror.device_groups_changed(device_id, [])
        return await self._store.groups.remove_all_of_device(device_id)

    async def add_member(self, group_id: int, device_id: int) -> None:
        await self._mirror.member_added(group_id, device_id)
        await self._store.groups.add_member(group_id, device_id)

    async def remove_member(self, group_id: int, device_id: int) -> None:
        await self._mirror.member_removed(group_id, device_id)
        await self._store.groups.remove_member(group_id, device_id)

    async def clear_group(self, group_id: int, delete_devices: bool) -> tuple[int, int]:
        """Empty the group; returns (memberships removed, devices deleted)."""
        members = await self._store.groups.member_ids(group_id) if delete_devices else []
        await self._mirror.group_cleared(group_id, delete_devices)
        removed, deleted = await self._store.groups.clear(group_id, delete_devices)
        for device_id in members:
            await self._link.disconnect(device_id, "deleted")
        return removed, deleted
