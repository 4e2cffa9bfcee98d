"""Fleet-wide counts for the dashboard endpoint."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Column, ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.schema import device_events, device_sessions, devices
from edgefleet.controller.store.scope import Scope, in_scope


async def _counts(
    connection: AsyncConnection, column: Column[str], *where: ColumnElement[bool]
) -> dict[str, int]:
    rows = await connection.execute(select(column, func.count()).where(*where).group_by(column))
    return {value: count for value, count in rows}


class StatsStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def by_state(self) -> dict[str, int]:
        """Devices by state (every state, zeros included): one grouped count."""
        async with self._db.read() as connection:
            counts = await _counts(connection, devices.c.state)
        return {state: counts.get(state, 0) for state in ("online", "unknown", "offline")}

    async def fleet(self, scope: Scope = None) -> dict[str, Any]:
        """The counts, of the devices in ``scope`` only when one is given."""

        def scoped(column: ColumnElement[int]) -> list[ColumnElement[bool]]:
            return [] if scope is None else [in_scope(column, scope)]

        async with self._db.read() as connection:
            by_state = await _counts(connection, devices.c.state, *scoped(devices.c.device_id))
            by_type = await _counts(connection, devices.c.type, *scoped(devices.c.device_id))
            connected = await connection.scalar(
                select(func.count())
                .select_from(device_sessions)
                .where(*scoped(device_sessions.c.device_id))
            )
            commands = await connection.scalar(
                select(func.count()).where(
                    device_events.c.event == "command_sent",
                    device_events.c.at >= utcnow() - timedelta(hours=1),
                    *scoped(device_events.c.device_id),
                )
            )
        return {
            "devices": sum(by_state.values()),
            "by_state": {
                state: by_state.get(state, 0) for state in ("online", "unknown", "offline")
            },
            "by_type": by_type,
            "connected": connected or 0,
            "commands_last_hour": commands or 0,
        }
