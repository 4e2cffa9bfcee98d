"""Desired configuration: the one path for reading and changing it (FLEET.md).

A write checks the caller's scope, writes the document with its audit entry in
one transaction (``If-Match`` checked there), then tells whoever holds the
sessions of the devices it reaches to send them their new effective
configuration: one device for a device's document, every member for a group's.
The push is fire-and-forget: a device that is not connected gets it at its next
login, and one whose southbound is away gets it when it logs in elsewhere.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from edgefleet.controller.access.principal import Caller
from edgefleet.controller.device_link import DeviceLink
from edgefleet.controller.store import DocumentTooBig, GroupNotFound, Scope, Store
from edgefleet.controller.store.configs import Change, merge_patch
from edgefleet.controller.writes import Auditor

log = logging.getLogger("edgefleet.configuration")

PERMISSION = "config:write"
MAX_DOCUMENT_BYTES = 32 * 1024
UNSUPPORTED = (
    "the device did not list the config extension at its last login "
    "(a version-1 device): it cannot be sent a configuration"
)


def checked(change: Change) -> Change:
    """``change`` with the size limit applied to what it produces."""

    def apply(current: dict[str, Any]) -> dict[str, Any]:
        document = change(current)
        size = len(json.dumps(document, separators=(",", ":")).encode())
        if size > MAX_DOCUMENT_BYTES:
            raise DocumentTooBig(
                f"the configuration would be {size} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit"
            )
        return document

    return apply


def replacing(document: dict[str, Any]) -> Change:
    return checked(lambda _current: document)


def patching(patch: dict[str, Any]) -> Change:
    return checked(lambda current: merge_patch(current, patch))


def in_sync(row: dict[str, Any], effective: dict[str, Any]) -> tuple[bool | None, str | None]:
    """Whether the device runs what it should, and when that cannot be known, why."""
    if row["supported"] is False:
        return None, UNSUPPORTED
    if row["report_status"] == "fail":
        return False, f"the device could not apply it: {row['report_message'] or 'no reason'}"
    if row["reported"] is None:
        return False, "the device has not reported its configuration yet"
    if row["reported"] != effective:
        return False, "the device runs another configuration"
    return True, None


class ConfigService:
    def __init__(self, store: Store, link: DeviceLink, auditor: Auditor) -> None:
        self._store = store
        self._link = link
        self._audit = auditor

    async def device(self, device_id: int, scope: Scope) -> dict[str, Any]:
        """The device's row, its effective configuration, and whether it is in sync."""
        row = await self._store.configs.device(device_id, scope)
        effective = (await self._store.configs.effective([device_id]))[device_id]
        sync, reason = in_sync(row, effective.config)
        return {**row, "effective": effective, "in_sync": sync, "reason": reason}

    async def set_device(
        self, caller: Caller, device_id: int, change: Change, if_match: int | None, action: str
    ) -> dict[str, Any]:
        async with self._audit.change(caller, action, "device", device_id, ["config"]) as entry:
            scope = caller.principal.scope(PERMISSION)
            if scope is not None:
                await self._store.devices.get(device_id, scope)
            await self._store.configs.set_device(device_id, change, if_match, entry)
        await self._push([device_id])
        return await self.device(device_id, None)

    async def group(self, group_id: int, scope: Scope) -> dict[str, Any]:
        return await self._store.configs.group(group_id, scope)

    async def set_group(
        self, caller: Caller, group_id: int, change: Change, if_match: int | None, action: str
    ) -> dict[str, Any]:
        async with self._audit.change(caller, action, "group", group_id, ["config"]) as entry:
            scope = caller.principal.scope(PERMISSION)
            if scope is not None and group_id not in scope:
                raise GroupNotFound(group_id)
            row = await self._store.configs.set_group(group_id, change, if_match, entry)
        members = await self._store.groups.member_ids(group_id)
        detail = {"group_id": str(group_id), "group_version": row["version"]}
        await self._store.configs.bump(members, detail)
        await self._push(members)
        return await self._store.configs.group(group_id)

    async def _push(self, device_ids: list[int]) -> None:
        if device_ids:
            await self._link.push_config(device_ids)
