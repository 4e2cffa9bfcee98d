"""Fleet-wide counts for the dashboard endpoint."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Column, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.schema import device_events, device_sessions, devices


async def _counts(connection: AsyncConnection, column: Column[str]) -> dict[str, int]:
    rows = await connection.execute(select(column, func.count()).group_by(column))
    return {value: count for value, count in rows}


class StatsStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def by_state(self) -> dict[str, int]:
        """Devices by state (every state, zeros included): one grouped count."""
        async with self._db.read() as connection:
            counts = await _counts(connection, devices.c.state)
        return {state: counts.get(state, 0) for state in ("online", "unknown", "offline")}

    async def fleet(self) -> dict[str, Any]:
        async with self._db.read() as connection:
            by_state = await _counts(connection, devices.c.state)
            by_type = await _counts(connection, devices.c.type)
            connected = await connection.scalar(select(func.count()).select_from(device_sessions))
            commands = await connection.scalar(
                select(func.count()).where(
                    device_events.c.event == "command_sent",
                    device_events.c.at >= utcnow() - timedelta(hours=1),
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
