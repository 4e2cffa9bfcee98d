"""Labels in SQL: writing a device's labels, selectors as query conditions, and
keeping the selector-matched memberships of dynamic groups up to date.

A dynamic group's members are materialised: a device the group's selector matches
has a ``device_group_members`` row with ``matched`` set. So every question about
membership — a group's devices, its count, a caller's group scope, a group
command's targets — reads one table, and costs the same for dynamic and static
groups. The rows follow the truth at the two places it changes, inside the same
transaction: a device's labels (``refresh_devices``, against every dynamic group)
and a group's selector (``refresh_group``, against the fleet, in SQL).

Concurrency on MySQL: a device write reads the dynamic groups with a shared lock
(``FOR SHARE``), and a selector change updates its group row before it reads
anything. Either the device write waits for the selector change and then sees the
new selector, or the selector change waits for the device write and its first
read sees the new labels: no interleaving leaves a stale row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, false, insert, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.store.database import utcnow
from edgefleet.controller.store.events import record_events
from edgefleet.controller.store.schema import (
    device_group_members,
    device_groups,
    device_labels,
    devices,
)
from edgefleet.controller.store.selectors import Requirement, Selector, parse_selector

CHUNK = 500
"""Ids per ``IN (…)`` list: far below every driver's limit on bound parameters."""


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _labelled(requirement: Requirement) -> ColumnElement[bool]:
    """``devices.device_id`` has the requirement's key (with one of its values)."""
    query = select(device_labels.c.device_id).where(device_labels.c.key == requirement.key)
    if requirement.values:
        query = query.where(device_labels.c.value.in_(requirement.values))
    return devices.c.device_id.in_(query)


def selector_condition(selector: Selector) -> ColumnElement[bool]:
    """A condition on ``devices`` that holds for the devices ``selector`` matches.
    Each requirement is a semi-join on the (key, value) index of ``device_labels``."""
    conditions = []
    for requirement in selector.requirements:
        has = _labelled(requirement)
        negated = requirement.operator in ("!=", "notin", "!")
        conditions.append(~has if negated else has)
    return and_(true(), *conditions)


async def write_labels(
    connection: AsyncConnection, labels_by_device: Mapping[int, Mapping[str, str]]
) -> None:
    """Make each device's rows in ``device_labels`` exactly these labels (the
    caller writes the same map to ``devices.labels``)."""
    ids = list(labels_by_device)
    for part in chunks(ids):
        await connection.execute(delete(device_labels).where(device_labels.c.device_id.in_(part)))
    rows = [
        {"device_id": device_id, "key": key, "value": value}
        for device_id, labels in labels_by_device.items()
        for key, value in labels.items()
    ]
    if rows:
        await connection.execute(insert(device_labels), rows)


async def _dynamic_groups(connection: AsyncConnection) -> list[dict[str, Any]]:
    rows = await connection.execute(
        select(device_groups.c.group_id, device_groups.c.name, device_groups.c.selector)
        .where(device_groups.c.selector.is_not(None))
        .with_for_update(read=True)
    )
    return [dict(row) for row in rows.mappings()]


async def refresh_devices(
    connection: AsyncConnection, labels_by_device: Mapping[int, Mapping[str, str]]
) -> set[int]:
    """Match these devices (with these labels) against every dynamic group: join
    the groups they now match, leave those they no longer do. Returns the groups
    whose members changed."""
    groups = await _dynamic_groups(connection)
    ids = list(labels_by_device)
    current: set[tuple[int, int]] = set()
    for part in chunks(ids):
        rows = await connection.execute(
            select(device_group_members.c.device_id, device_group_members.c.group_id).where(
                device_group_members.c.device_id.in_(part), device_group_members.c.matched
            )
        )
        current |= {(row.device_id, row.group_id) for row in rows}
    wanted = {
        (device_id, group["group_id"])
        for group in groups
        for device_id, labels in labels_by_device.items()
        if parse_selector(group["selector"]).matches(labels)
    }
    by_id = {group["group_id"]: group for group in groups}
    for group_id, device_ids in _by_group(wanted - current).items():
        for part in chunks(device_ids):
            await _match(connection, by_id[group_id], part)
    for group_id, device_ids in _by_group(current - wanted).items():
        # A group whose selector was just cleared is not among the dynamic ones.
        group = by_id.get(group_id) or {"group_id": group_id, "name": ""}
        for part in chunks(device_ids):
            await _unmatch(connection, group, part)
    return {group_id for _, group_id in wanted ^ current}


def _by_group(pairs: set[tuple[int, int]]) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = {}
    for device_id, group_id in sorted(pairs):
        grouped.setdefault(group_id, []).append(device_id)
    return grouped


async def refresh_group(connection: AsyncConnection, group: Mapping[str, Any]) -> int:
    """Make the group's matched members exactly the devices its selector (None: no
    selector) matches, evaluated in SQL. Returns how many memberships changed."""
    group_id = group["group_id"]
    wanted: set[int] = set()
    if group["selector"] is not None:
        condition = selector_condition(parse_selector(group["selector"]))
        wanted = set(await connection.scalars(select(devices.c.device_id).where(condition)))
    current = set(
        await connection.scalars(
            select(device_group_members.c.device_id).where(
                device_group_members.c.group_id == group_id, device_group_members.c.matched
            )
        )
    )
    joining, leaving = sorted(wanted - current), sorted(current - wanted)
    for part in chunks(joining):
        await _match(connection, group, part)
    for part in chunks(leaving):
        await _unmatch(connection, group, part)
    return len(joining) + len(leaving)


def _membership(group_id: int, device_ids: Sequence[int]) -> ColumnElement[bool]:
    return and_(
        device_group_members.c.group_id == group_id,
        device_group_members.c.device_id.in_(device_ids),
    )


async def _match(connection: AsyncConnection, group: Mapping[str, Any], ids: Sequence[int]) -> None:
    """Mark these devices matched; those that were no members at all join (and log it)."""
    group_id = group["group_id"]
    static = set(
        await connection.scalars(
            select(device_group_members.c.device_id).where(_membership(group_id, ids))
        )
    )
    if static:
        await connection.execute(
            update(device_group_members)
            .where(_membership(group_id, sorted(static)))
            .values(matched=True)
        )
    new = [device_id for device_id in ids if device_id not in static]
    if new:
        now = utcnow()
        await connection.execute(
            insert(device_group_members),
            [
                {"device_id": d, "group_id": group_id, "created_at": now, "static": False,
                 "matched": True}
                for d in new
            ],
        )  # fmt: skip
        await log_membership(connection, "group_joined", new, group, by_selector=True)


async def _unmatch(
    connection: AsyncConnection, group: Mapping[str, Any], ids: Sequence[int]
) -> None:
    """These devices no longer match: static members stay, the others leave."""
    group_id = group["group_id"]
    await connection.execute(
        update(device_group_members)
        .where(_membership(group_id, ids), device_group_members.c.static)
        .values(matched=False)
    )
    leaving = list(
        await connection.scalars(
            select(device_group_members.c.device_id).where(
                _membership(group_id, ids), device_group_members.c.static == false()
            )
        )
    )
    if leaving:
        await connection.execute(delete(device_group_members).where(_membership(group_id, leaving)))
        await log_membership(connection, "group_left", leaving, group, by_selector=True)


async def log_membership(
    connection: AsyncConnection,
    event: str,
    device_ids: Iterable[int],
    group: Mapping[str, Any],
    by_selector: bool = False,
) -> None:
    """``group_joined`` / ``group_left`` in each device's log; ``by`` says whether a
    person or the group's selector made the change."""
    detail = {"group_id": str(group["group_id"]), "group": group["name"]}
    if by_selector:
        detail["by"] = "selector"
    await record_events(connection, device_ids, event, detail)
