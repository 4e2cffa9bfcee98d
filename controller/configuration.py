"""Desired configuration: the one path for reading and changing it (FLEET.md).

A write checks the caller's scope, writes the document with its audit entry in
one transaction (``If-Match`` checked there), then tells whoever holds the
sessions of the devices it reaches to send them their new effective
configuration: one device for a device's document, every member for a group's,
and the devices that joined or left a group with a document for a membership
change (``controller.membership_changes`` finds those).
The push is fire-and-forget: a device that is not connected gets it at its next
login, and one whose southbound is away gets it when it logs in elsewhere.

A write whose document equals the one in force (the store decides, in the write's
transaction) changes nothing: it answers 200 with the current version, as a
repeated ``PUT`` should, is audited naming no field, and bumps nothing; it is
pushed again only to a device not in sync with it, so a device is never sent a
configuration it already has. This is also
what keeps one REST write in Kubernetes mode at one version: the operator, seeing
the new ``spec.config``, writes the same document, and whichever of the two comes
second finds it in force.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from edgefleet.controller.access.principal import Caller
from edgefleet.controller.device_link import DeviceLink
from edgefleet.controller.mirror import ResourceMirror
from edgefleet.controller.store import (
    DocumentTooBig,
    GroupNotFound,
    Scope,
    Store,
    VersionMismatch,
)
from edgefleet.controller.store.audit import AuditEntry
from edgefleet.controller.store.configs import (
    UNSUPPORTED,
    Change,
    Written,
    in_sync,
    merge_patch,
    same_document,
)

if TYPE_CHECKING:  # writes imports this module (a membership change pushes configuration)
    from edgefleet.controller.writes import Auditor

log = logging.getLogger("edgefleet.configuration")

PERMISSION = "config:write"
MAX_DOCUMENT_BYTES = 32 * 1024
Pairs = set[tuple[int, int]]
"""Memberships as (device id, group id)."""


class ConfigUnsupported(Exception):
    """The device cannot be sent a configuration (it did not list ``config``)."""


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


class ConfigChanges:
    """What follows a written document or a membership change: the effective
    versions of the devices it reaches go up, and the connected ones are sent their
    new configuration."""

    def __init__(self, store: Store, link: DeviceLink) -> None:
        self._store = store
        self._link = link

    async def group_changed(self, group_id: int) -> None:
        """Every member's effective configuration changed: bump and push it."""
        row = await self._store.configs.group(group_id)
        members = await self._store.groups.member_ids(group_id)
        detail = {"group_id": str(group_id), "group_version": row["version"]}
        await self._store.configs.bump(members, detail)
        await self.push(members)

    async def configured_groups(self) -> set[int]:
        """The groups whose document is not empty: joining or leaving one of them
        changes a device's effective configuration (read before a membership change,
        so a group being deleted counts)."""
        return {row["group_id"] for row in await self._store.configs.group_documents()}

    async def regrouped(self, joined: Pairs, left: Pairs, configured: set[int]) -> None:
        """Devices joined or left groups (``(device id, group id)`` pairs): those whose
        group has a document have a new effective configuration; bump and push it,
        as for a change of the group's document."""
        reached: set[int] = set()
        for membership, pairs in (("joined", joined), ("left", left)):
            by_group: dict[int, list[int]] = {}
            for device_id, group_id in sorted(pairs):
                if group_id in configured:
                    by_group.setdefault(group_id, []).append(device_id)
            for group_id, device_ids in by_group.items():
                detail = {"group_id": str(group_id), "membership": membership}
                await self._store.configs.bump(device_ids, detail)
                reached.update(device_ids)
        await self.push(sorted(reached))

    async def adopt(self, kind: str, target_id: int, config: dict[str, Any]) -> None:
        """Kubernetes mode: ``spec.config`` of a Device or DeviceGroup, as the operator
        reads it, becomes the desired document when it differs (a change made with
        kubectl; one made through the API is found equal, even when the operator
        gets there before the API's own write). Most reconciles do not touch the
        document, so it is read first: a write transaction only for a change."""
        configs = self._store.configs
        if kind == "device":
            row = await configs.device(target_id)
            if not same_document(row["desired"], config):
                written = await configs.set_device(target_id, lambda _: config, None)
                if written.changed:
                    await self.push([target_id])
        else:
            row = await configs.group(target_id)
            if not same_document(row["config"], config):
                written = await configs.set_group(target_id, lambda _: config, None)
                if written.changed:
                    await self.group_changed(target_id)

    async def push(self, device_ids: list[int]) -> None:
        if device_ids:
            await self._link.push_config(device_ids)


class ConfigService:
    def __init__(
        self, store: Store, link: DeviceLink, auditor: Auditor, mirror: ResourceMirror
    ) -> None:
        self._store = store
        self._audit = auditor
        self._mirror = mirror
        self._changes = ConfigChanges(store, link)

    async def device(self, device_id: int, scope: Scope) -> dict[str, Any]:
        """The device's row, its effective configuration, and whether it is in sync."""
        row = await self._store.configs.device(device_id, scope)
        effective = (await self._store.configs.effective([device_id]))[device_id]
        sync, reason = in_sync(row, effective.config)
        return {**row, "effective": effective, "in_sync": sync, "reason": reason}

    async def set_device(
        self, caller: Caller, device_id: int, change: Change, if_match: int | None, action: str
    ) -> dict[str, Any]:
        """The device's document changed by ``change``, pushed to it, and the row now
        in force. One that ``change`` leaves as it is is a success that changes
        nothing: the same version comes back, and the audit log still shows who
        asked, naming no field (a repeated ``PUT`` is a request like any other, not
        an error, and not a change). It is pushed again only to a device not in
        sync with it (one that failed to apply it, say): asking again is how a
        user retries, and a device in sync is sent nothing."""
        async with self._audit.change(caller, action, "device", device_id, ["config"]) as entry:
            scope = caller.principal.scope(PERMISSION)
            if scope is not None:
                await self._store.devices.get(device_id, scope)
            written = await self._write(device_id, change, if_match, entry)
        state = await self.device(device_id, None)
        await self._push(device_id, written.changed, state)
        return state

    async def _push(
        self, device_id: int, changed: bool, state: dict[str, Any] | None = None
    ) -> None:
        """Push the device its document when it changed, or when the device is not
        in sync with it (its ``state`` read only then, unless given: most writes
        change something)."""
        if not changed:
            state = state or await self.device(device_id, None)
            if state["in_sync"]:
                return
        await self._changes.push([device_id])

    async def apply(self, device_id: int, change: Change, since: datetime) -> int:
        """A job's write of one device's document, by the same path as a REST write
        (the resource first in Kubernetes mode, then the database, then the push),
        made conditional on the version it was computed from as ``If-Match`` makes
        a REST write: a change written by someone meanwhile is never overwritten
        blindly (``VersionMismatch``: compute again from the new document). Returns
        the effective version the device must report. Raises ``DocumentTooBig``,
        ``DeviceNotFound``, and ``ConfigUnsupported`` for a version-1 device.

        A document already written ``since`` the device was admitted, and which the
        change leaves as it is, is not written again: the job's scheduler stopped
        between writing it and recording so, and the device has it already."""
        current = await self._store.configs.device(device_id)
        if current["supported"] is False:
            raise ConfigUnsupported(UNSUPPORTED)
        updated = current["updated_at"]
        if (
            updated is not None
            and updated >= since
            and same_document(change(current["desired"]), current["desired"])
        ):
            return int(current["effective_version"])
        written = await self._write(device_id, change, current["version"])
        await self._push(device_id, written.changed)
        return int(written.row["effective_version"])

    async def _write(
        self, device_id: int, change: Change, if_match: int | None, entry: AuditEntry | None = None
    ) -> Written:
        current = await self._store.configs.device(device_id)
        new = self._mirrored_change(current["desired"], current["version"], change, if_match)
        if not same_document(current["desired"], new):
            await self._mirror.config_changed("device", device_id, current["desired"], new)
        return await self._store.configs.set_device(device_id, lambda _: new, if_match, entry)

    @staticmethod
    def _mirrored_change(
        current: dict[str, Any], version: int, change: Change, if_match: int | None
    ) -> dict[str, Any]:
        """The new document, computed before the resource is written (Kubernetes mode:
        the resource first); the store checks ``if_match`` again as it writes."""
        if if_match is not None and if_match != version:
            raise VersionMismatch(version, if_match)
        return change(current)

    async def group(self, group_id: int, scope: Scope) -> dict[str, Any]:
        return await self._store.configs.group(group_id, scope)

    async def set_group(
        self, caller: Caller, group_id: int, change: Change, if_match: int | None, action: str
    ) -> dict[str, Any]:
        """The group's document changed by ``change`` and every member sent its new
        effective configuration; as for a device, a write that changes nothing
        keeps the version, reaches no member, and is audited naming no field."""
        async with self._audit.change(caller, action, "group", group_id, ["config"]) as entry:
            scope = caller.principal.scope(PERMISSION)
            if scope is not None and group_id not in scope:
                raise GroupNotFound(group_id)
            current = await self._store.configs.group(group_id)
            new = self._mirrored_change(current["config"], current["version"], change, if_match)
            if not same_document(current["config"], new):
                await self._mirror.config_changed("group", group_id, current["config"], new)
            written = await self._store.configs.set_group(group_id, lambda _: new, if_match, entry)
        if written.changed:
            await self._changes.group_changed(group_id)
        return await self._store.configs.group(group_id)
