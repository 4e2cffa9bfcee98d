"""The device log: every change to a device, and every session transition, is a row."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.errors import DeviceNotFound
from edgefleet.controller.store.pages import page_of, window
from edgefleet.controller.store.schema import device_events, devices
from edgefleet.controller.store.scope import Scope, in_scope


async def record_events(
    connection: AsyncConnection,
    device_ids: Iterable[int],
    event: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append ``event`` for each device, inside the caller's transaction."""
    at = utcnow()
    rows = [
        {"device_id": device_id, "at": at, "event": event, "detail": detail or {}}
        for device_id in device_ids
    ]
    if rows:
        await connection.execute(insert(device_events), rows)


@dataclass(frozen=True)
class EventFilter:
    event: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class EventStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def list(
        self, device_id: int, where: EventFilter, page: int, per_page: int, scope: Scope = None
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the device's events, newest first. The log of a deleted device
        stays readable; an id that never had a device or an event is not found, and
        neither is a device outside ``scope`` (a deleted one is in no group)."""
        conditions = [device_events.c.device_id == device_id]
        if scope is not None:
            conditions.append(in_scope(device_events.c.device_id, scope))
        if where.event is not None:
            conditions.append(device_events.c.event == where.event)
        conditions += window(device_events.c.at, where.since, where.until)
        order = [device_events.c.at.desc(), device_events.c.event_id.desc()]
        async with self._db.read() as connection:
            items, total = await page_of(
                connection, device_events, conditions, order, page, per_page
            )
            if not items and total == 0:
                # Nothing matched the filters: the device may still be there.
                device = select(devices.c.device_id).where(devices.c.device_id == device_id)
                if scope is not None:
                    device = device.where(in_scope(devices.c.device_id, scope))
                exists = await connection.scalar(device) or (
                    scope is None
                    and await connection.scalar(
                        select(device_events.c.event_id)
                        .where(device_events.c.device_id == device_id)
                        .limit(1)
                    )
                )
                if not exists:
                    raise DeviceNotFound(device_id)
        return items, total
