"""Desired configuration documents of devices and groups, and what devices report.

A write takes a function from the current document to the new one and runs it in
the write's transaction, after ``If-Match`` is checked against the row it read
there: a replace and a merge patch are the same write, and two writers cannot both
win against one version. Group membership is not read here: whoever changes a
group's document hands in the members (``GroupStore.member_ids``), whose effective
version is bumped so each of them is sent the change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.store.audit import AuditEntry, write_audit
from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.devices import fetch_device
from edgefleet.controller.store.errors import GroupNotFound, VersionMismatch
from edgefleet.controller.store.events import record_events
from edgefleet.controller.store.groups import GroupStore, fetch_group
from edgefleet.controller.store.pages import first_row
from edgefleet.controller.store.schema import (
    device_configs,
    device_events,
    device_groups,
    group_configs,
)
from edgefleet.controller.store.scope import Scope

Change = Callable[[dict[str, Any]], dict[str, Any]]
"""The current document in, the new one out (a replace ignores its argument)."""
CHUNK = 500
"""Devices per statement when a group's change reaches its members."""

EMPTY_DEVICE: dict[str, Any] = {
    "desired": {},
    "version": 0,
    "effective_version": 0,
    "updated_at": None,
    "reported": None,
    "reported_version": None,
    "report_status": None,
    "report_message": None,
    "reported_at": None,
    "supported": None,
}
"""A device whose configuration was never set nor reported."""


def _check(version: int, if_match: int | None) -> None:
    if if_match is not None and if_match != version:
        raise VersionMismatch(version, if_match)


async def _device_row(connection: AsyncConnection, device_id: int) -> dict[str, Any] | None:
    return await first_row(
        connection,
        select(device_configs).where(device_configs.c.device_id == device_id).with_for_update(),
    )


INSERT_MISSING = (
    insert(device_configs)
    .prefix_with("OR IGNORE", dialect="sqlite")
    .prefix_with("IGNORE", dialect="mysql")
    .prefix_with("IGNORE", dialect="mariadb")
)
"""Rows that exist already are left as they are, whoever inserted them meanwhile
(the controller writing a document, the southbound storing a report)."""

STORE_REPORT = (
    update(device_configs)
    .where(device_configs.c.device_id == bindparam("b_device_id"))
    .values(supported=True)
)
"""One device's report; executed with many parameter sets (``ConfigStore.reports``)."""


@dataclass(frozen=True)
class Reported:
    """A ``config_report`` as a device sent it, and when."""

    device_id: int
    version: int | None
    reported: Any
    status: str
    message: str | None
    at: datetime

    def detail(self) -> dict[str, Any]:
        """What the device log keeps of it."""
        detail: dict[str, Any] = {"version": self.version, "status": self.status}
        if self.message:
            detail["message"] = self.message
        return detail


async def _ensure_rows(connection: AsyncConnection, device_ids: Sequence[int]) -> None:
    """Give every device of ``device_ids`` a row (those that have none get an empty one)."""
    if device_ids:
        rows = [{**EMPTY_DEVICE, "device_id": device_id} for device_id in device_ids]
        await connection.execute(INSERT_MISSING, rows)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, ``null`` removes a key,
    anything else replaces the target."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def merge_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``old`` into ``new`` (``merge_patch(old, diff) == new``
    for documents without nulls)."""
    diff: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(before, dict) and isinstance(value, dict):
            if before != value:
                diff[key] = merge_diff(before, value)
        elif key not in old or before != value:
            diff[key] = value
    return diff


def in_sync(row: dict[str, Any], effective: dict[str, Any]) -> tuple[bool | None, str | None]:
    """Whether the device runs what it should, and when it does not (or that cannot
    be known), why."""
    if row["supported"] is False:
        return None, UNSUPPORTED
    if row["report_status"] == "fail":
        return False, f"the device could not apply it: {row['report_message'] or 'no reason'}"
    if row["reported"] is None:
        return False, "the device has not reported its configuration yet"
    if row["reported"] != effective:
        return False, "the device runs another configuration"
    return True, None


UNSUPPORTED = (
    "the device did not list the config extension at its last login "
    "(a version-1 device): it cannot be sent a configuration"
)


@dataclass(frozen=True)
class Effective:
    """What a device should run: its groups' documents merged in group name order,
    its own on top, and the version that names this state."""

    version: int
    config: dict[str, Any]
    groups: tuple[str, ...]
    """Names of the groups whose documents went in, in merge order."""


class ConfigStore:
    def __init__(self, db: Database, groups: GroupStore) -> None:
        self._db = db
        self._groups = groups

    # --- devices ---------------------------------------------------------------------------

    async def device(self, device_id: int, scope: Scope = None) -> dict[str, Any]:
        """The device's row (empty when never set); ``DeviceNotFound`` outside ``scope``."""
        async with self._db.read() as connection:
            await fetch_device(connection, device_id, scope)
            row = await first_row(
                connection, select(device_configs).where(device_configs.c.device_id == device_id)
            )
            return {**EMPTY_DEVICE, "device_id": device_id, **(row or {})}

    async def devices(self, device_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The rows of those devices that have one."""
        found: dict[int, dict[str, Any]] = {}
        async with self._db.read() as connection:
            for start in range(0, len(device_ids), CHUNK):
                chunk = device_ids[start : start + CHUNK]
                rows = await connection.execute(
                    select(device_configs).where(device_configs.c.device_id.in_(chunk))
                )
                found.update({row["device_id"]: dict(row) for row in rows.mappings()})
        return found

    async def set_device(
        self,
        device_id: int,
        change: Change,
        if_match: int | None,
        audit: AuditEntry | None = None,
    ) -> dict[str, Any]:
        """Write the device's document; raises ``VersionMismatch`` for a stale
        ``if_match``. Both versions go up by one."""
        async with self._db.begin() as connection:
            await fetch_device(connection, device_id)
            row = await _device_row(connection, device_id)
            if row is None:
                await _ensure_rows(connection, [device_id])
                row = {**EMPTY_DEVICE, "device_id": device_id}
            _check(row["version"], if_match)
            values = {
                "desired": change(row["desired"]),
                "version": row["version"] + 1,
                "effective_version": row["effective_version"] + 1,
                "updated_at": utcnow(),
            }
            await connection.execute(
                update(device_configs)
                .where(device_configs.c.device_id == device_id)
                .values(**values)
            )
            await record_events(
                connection, [device_id], "config_changed", {"version": values["version"]}
            )
            await write_audit(connection, audit)
            return {**row, **values}

    async def reports(self, reports: Sequence[Reported]) -> None:
        """Store many ``config_report``s in one transaction, in order (a device's
        later report wins): a group's change makes every member report at once,
        and one commit each would take the database minutes for 10,000 members."""
        if not reports:
            return
        async with self._db.begin() as connection:
            await _ensure_rows(connection, list(dict.fromkeys(r.device_id for r in reports)))
            await connection.execute(
                STORE_REPORT,
                [
                    {"b_device_id": r.device_id, "reported": r.reported,
                     "reported_version": r.version, "report_status": r.status,
                     "report_message": r.message, "reported_at": r.at}
                    for r in reports
                ],
            )  # fmt: skip
            logged = utcnow()
            await connection.execute(
                insert(device_events),
                [
                    {"device_id": r.device_id, "at": logged, "event": "config_reported",
                     "detail": r.detail()}
                    for r in reports
                ],
            )  # fmt: skip

    async def set_supported(self, device_ids: Sequence[int], supported: bool) -> None:
        """Whether these devices listed ``config`` at their latest login."""
        async with self._db.begin() as connection:
            for start in range(0, len(device_ids), CHUNK):
                chunk = device_ids[start : start + CHUNK]
                await _ensure_rows(connection, chunk)
                await connection.execute(
                    update(device_configs)
                    .where(device_configs.c.device_id.in_(chunk))
                    .values(supported=supported)
                )

    # --- groups ------------------------------------------------------------------------------

    async def group(self, group_id: int, scope: Scope = None) -> dict[str, Any]:
        async with self._db.read() as connection:
            await fetch_group(connection, group_id, scope)
            row = await first_row(
                connection, select(group_configs).where(group_configs.c.group_id == group_id)
            )
            empty = {"config": {}, "version": 0, "updated_at": None}
            return {**empty, "group_id": group_id, **(row or {})}

    async def set_group(
        self,
        group_id: int,
        change: Change,
        if_match: int | None,
        audit: AuditEntry | None = None,
    ) -> dict[str, Any]:
        """Write the group's document; raises ``VersionMismatch`` for a stale
        ``if_match``. Its members are then ``bump``-ed by the caller."""
        async with self._db.begin() as connection:
            await fetch_group(connection, group_id)
            row = await first_row(
                connection,
                select(group_configs).where(group_configs.c.group_id == group_id).with_for_update(),
            )
            current = row or {"config": {}, "version": 0}
            _check(current["version"], if_match)
            values = {
                "group_id": group_id,
                "config": change(current["config"]),
                "version": current["version"] + 1,
                "updated_at": utcnow(),
            }
            if row is None:
                await connection.execute(insert(group_configs), values)
            else:
                await connection.execute(
                    update(group_configs)
                    .where(group_configs.c.group_id == group_id)
                    .values(**values)
                )
            await write_audit(connection, audit)
        return values

    async def bump(self, device_ids: Sequence[int], detail: dict[str, Any]) -> None:
        """What these devices should run changed: their effective version goes up,
        and each logs ``config_changed``."""
        for start in range(0, len(device_ids), CHUNK):
            chunk = device_ids[start : start + CHUNK]
            async with self._db.begin() as connection:
                await _ensure_rows(connection, chunk)
                await connection.execute(
                    update(device_configs)
                    .where(device_configs.c.device_id.in_(chunk))
                    .values(effective_version=device_configs.c.effective_version + 1)
                )
                await record_events(connection, chunk, "config_changed", detail)

    async def group_documents(self) -> list[dict[str, Any]]:
        """Every group's non-empty document, in group name order (the merge order)."""
        async with self._db.read() as connection:
            rows = await connection.execute(
                select(
                    group_configs.c.group_id,
                    device_groups.c.name,
                    group_configs.c.config,
                    group_configs.c.version,
                )
                .join(device_groups, device_groups.c.group_id == group_configs.c.group_id)
                .order_by(device_groups.c.name)
            )
            return [dict(row) for row in rows.mappings() if row["config"]]

    async def effective(self, device_ids: Sequence[int]) -> dict[int, Effective]:
        """The effective configuration of each device: one query for the group
        documents, one membership read per group that has a document, one for the
        devices' own rows — whatever the number of devices."""
        groups = await self.group_documents()
        members = [await self._members(g["group_id"]) for g in groups]
        rows = await self.devices(device_ids)
        answer = {}
        for device_id in device_ids:
            row = rows.get(device_id, EMPTY_DEVICE)
            config: dict[str, Any] = {}
            names = []
            for group, group_members in zip(groups, members, strict=True):
                if device_id in group_members:
                    config = merge_patch(config, group["config"])
                    names.append(group["name"])
            config = merge_patch(config, row["desired"])
            answer[device_id] = Effective(row["effective_version"], config, tuple(names))
        return answer

    async def _members(self, group_id: int) -> set[int]:
        try:
            return set(await self._groups.member_ids(group_id))
        except GroupNotFound:  # deleted since its document was read
            return set()
