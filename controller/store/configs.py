"""Desired configuration documents of devices and groups, and what devices report.

A write takes a function from the current document to the new one and runs it in
the write's transaction: a replace and a merge patch are the same write. This is
the one place that assigns versions: a write whose new document equals the one in
force takes none (``Written.changed`` is false), so whoever made it pushes
nothing. Otherwise ``If-Match`` is checked against the row read there, and two
writers cannot both win against one version. The order matters in Kubernetes
mode: the service writes the resource first, and the operator may apply it to
the database before the service's own write lands; that write then finds its
document already in force, and succeeds without a version instead of failing
against the one the operator took. (A caller's stale ``If-Match`` is refused
earlier, by the service, against the row it read before writing anything.)

The row is updated only while it still holds the version that was read. On
MariaDB the read locks it and that always holds; on SQLite a transaction's reads
come before its write lock, so a writer that finds the row moved on reads it again
and decides afresh: two racing identical writes take one version between them. A
missing row is inserted in a transaction of its own (empty), then read like any
other, so two first writers never deadlock on MariaDB's gap locks.

Group membership is not read here: whoever changes a group's document hands in the
members (``GroupStore.member_ids``), whose effective version is bumped so each of
them is sent the change.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
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

EMPTY_GROUP: dict[str, Any] = {"config": {}, "version": 0, "updated_at": None}
"""A group whose configuration was never set."""


def _check(version: int, if_match: int | None) -> None:
    """A stale ``if_match`` of a write that would change the document (FLEET.md:
    412). A caller's own stale version is refused before this, by the service,
    even when its document equals the one in force."""
    if if_match is not None and if_match != version:
        raise VersionMismatch(version, if_match)


def same_document(first: Any, second: Any) -> bool:
    """Equal as JSON, which Python's ``==`` is not: ``1``, ``1.0`` and ``true`` are
    three values to a device."""
    return _canonical(first) == _canonical(second)


def _canonical(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _unchanged(audit: AuditEntry | None) -> AuditEntry | None:
    """The audit entry of a write that changed nothing: the caller's request is
    still on record (who asked, and that it succeeded), with no field named,
    since none changed."""
    return None if audit is None else replace(audit, fields=())


@dataclass(frozen=True)
class Written:
    """What a write left in force, and whether it changed anything."""

    row: dict[str, Any]
    changed: bool
    """False: the new document equals the one in force; no version was taken, no
    ``config_changed`` logged, and nothing is to be pushed."""


INSERT_MISSING = (
    insert(device_configs)
    .prefix_with("OR IGNORE", dialect="sqlite")
    .prefix_with("IGNORE", dialect="mysql")
    .prefix_with("IGNORE", dialect="mariadb")
)
"""Rows that exist already are left as they are, whoever inserted them meanwhile
(the controller writing a document, the southbound storing a report)."""

INSERT_MISSING_GROUP = (
    insert(group_configs)
    .prefix_with("OR IGNORE", dialect="sqlite")
    .prefix_with("IGNORE", dialect="mysql")
    .prefix_with("IGNORE", dialect="mariadb")
)
"""A group's empty row, unless another writer inserted one meanwhile."""

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


async def _insert_empty_group(connection: AsyncConnection, group_id: int) -> None:
    row = {**EMPTY_GROUP, "group_id": group_id, "updated_at": utcnow()}
    await connection.execute(INSERT_MISSING_GROUP, row)


@dataclass(frozen=True)
class _Kind:
    """Where a device's or a group's document lives, and what its write does."""

    table: Table
    key: str
    """The id column."""
    document: str
    """The document column."""
    counters: tuple[str, ...]
    """The version columns a change raises by one; the row is updated only while
    each is as read (a device's effective version is also raised by its groups'
    changes, and none of those may be lost either)."""
    logged: bool
    """Whether a change is logged on the device as ``config_changed``."""
    empty: dict[str, Any]
    """The row of a target whose document was never set."""
    fetch: Callable[[AsyncConnection, int], Awaitable[Any]]
    """The target itself (raises its not-found error)."""
    insert_empty: Callable[[AsyncConnection, int], Awaitable[None]]
    """An empty row for the target, unless one exists already."""


DEVICE_DOCUMENT = _Kind(
    device_configs,
    "device_id",
    "desired",
    ("version", "effective_version"),
    True,
    EMPTY_DEVICE,
    fetch_device,
    lambda connection, device_id: _ensure_rows(connection, [device_id]),
)
GROUP_DOCUMENT = _Kind(
    group_configs,
    "group_id",
    "config",
    ("version",),
    False,
    EMPTY_GROUP,
    fetch_group,
    _insert_empty_group,
)


async def _replace(
    connection: AsyncConnection,
    kind: _Kind,
    row: dict[str, Any],
    document: dict[str, Any],
    audit: AuditEntry | None,
) -> Written | None:
    """``document`` replaces the one of ``row`` (as read in this transaction), with
    its audit entry; None when the row moved on since (SQLite): read it again."""
    table = kind.table
    values = {
        kind.document: document,
        "updated_at": utcnow(),
        **{counter: row[counter] + 1 for counter in kind.counters},
    }
    moved = await connection.execute(
        update(table)
        .where(
            table.c[kind.key] == row[kind.key],
            *(table.c[counter] == row[counter] for counter in kind.counters),
        )
        .values(**values)
    )
    if moved.rowcount != 1:
        return None
    if kind.logged:
        detail = {"version": values["version"]}
        await record_events(connection, [row[kind.key]], "config_changed", detail)
    await write_audit(connection, audit)
    return Written({**row, **values}, changed=True)


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
    ) -> Written:
        """Write the device's document. Both versions go up by one, unless the new
        document equals the one in force: then only ``audit`` is written (naming
        no field). Raises ``VersionMismatch`` for a stale ``if_match`` of a write
        that would change it."""
        return await self._set(DEVICE_DOCUMENT, device_id, change, if_match, audit)

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
            return {**EMPTY_GROUP, "group_id": group_id, **(row or {})}

    async def set_group(
        self,
        group_id: int,
        change: Change,
        if_match: int | None,
        audit: AuditEntry | None = None,
    ) -> Written:
        """Write the group's document. Its version goes up by one and its members
        are then ``bump``-ed by the caller, unless the new document equals the one
        in force: then only ``audit`` is written (naming no field). Raises
        ``VersionMismatch`` for a stale ``if_match`` of a write that would change
        it."""
        return await self._set(GROUP_DOCUMENT, group_id, change, if_match, audit)

    async def _set(
        self,
        kind: _Kind,
        target_id: int,
        change: Change,
        if_match: int | None,
        audit: AuditEntry | None,
    ) -> Written:
        """The write of a device's or group's document (the module's docstring says
        how it decides and why it may read again)."""
        table = kind.table
        while True:
            async with self._db.begin() as connection:
                await kind.fetch(connection, target_id)
                row = await first_row(
                    connection,
                    select(table).where(table.c[kind.key] == target_id).with_for_update(),
                )
                current = row or {**kind.empty, kind.key: target_id}
                document = change(current[kind.document])
                if same_document(document, current[kind.document]):
                    await write_audit(connection, _unchanged(audit))
                    return Written(current, changed=False)
                _check(current["version"], if_match)
                if row is not None:
                    written = await _replace(connection, kind, row, document, audit)
                    if written is not None:
                        return written
            if row is None:
                async with self._db.begin() as connection:
                    await kind.fetch(connection, target_id)
                    await kind.insert_empty(connection, target_id)

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
