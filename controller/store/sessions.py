"""What the southbound writes: device credentials for login, who holds which
session, device state transitions and their events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.store.database import Database, utcnow
from controller.store.events import record_events
from controller.store.schema import device_sessions, devices

CREDENTIAL_COLUMNS = [
    devices.c.device_id,
    devices.c.secret,
    devices.c.credential_version,
    devices.c.disabled,
    devices.c.name,
    devices.c.type,
    devices.c.k8s_namespace,
]


async def _set_state(
    connection: AsyncConnection, device_ids: list[int], state: str, detail: dict[str, Any]
) -> None:
    await connection.execute(
        update(devices).where(devices.c.device_id.in_(device_ids)).values(state=state)
    )
    await record_events(connection, device_ids, state, detail)


class SessionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def credentials(
        self,
        device_id: int | None = None,
        sn: str | None = None,
        model: str | None = None,
    ) -> dict[str, Any] | None:
        """The login view of a device, found by id or by (serial number, model)."""
        if device_id is not None:
            condition = devices.c.device_id == device_id
        else:
            condition = and_(devices.c.hardware_sn == sn, devices.c.hardware_model == model)
        async with self._db.read() as connection:
            row = (
                (await connection.execute(select(*CREDENTIAL_COLUMNS).where(condition)))
                .mappings()
                .first()
            )
        return dict(row) if row else None

    # Lock order, to keep MySQL free of deadlocks with the REST writes: the devices
    # row first (exclusive, by the UPDATE), then its session row. Touching the
    # session row first would take a shared lock on the device through the foreign
    # key and then need to upgrade it, which two transactions cannot both do.

    async def connected(self, device_id: int, instance: str, address: str, peer: str) -> None:
        """A device logged in at ``instance`` (internal API at ``address``) from
        ``peer``: mark it online, claim its session row."""
        now = utcnow()
        async with self._db.begin() as connection:
            await connection.execute(
                update(devices).where(devices.c.device_id == device_id).values(state="online")
            )
            await connection.execute(
                delete(device_sessions).where(device_sessions.c.device_id == device_id)
            )
            await connection.execute(
                insert(device_sessions),
                {
                    "device_id": device_id,
                    "instance": instance,
                    "address": address,
                    "connected_at": now,
                },
            )
            await record_events(
                connection, [device_id], "connected", {"instance": instance, "peer": peer}
            )
            await record_events(connection, [device_id], "online", {})

    async def state_changed(self, device_id: int, state: str, detail: dict[str, Any]) -> None:
        async with self._db.begin() as connection:
            await _set_state(connection, [device_id], state, detail)

    async def disconnected(self, device_id: int, instance: str, reason: str) -> None:
        """The session held here ended. A newer session elsewhere keeps its row."""
        held_here = (
            select(device_sessions.c.device_id)
            .where(
                device_sessions.c.device_id == device_id,
                device_sessions.c.instance == instance,
            )
            .exists()
        )
        async with self._db.begin() as connection:
            await connection.execute(
                update(devices)
                .where(devices.c.device_id == device_id, held_here)
                .values(state="offline")
            )
            await connection.execute(
                delete(device_sessions).where(
                    device_sessions.c.device_id == device_id,
                    device_sessions.c.instance == instance,
                )
            )
            await record_events(connection, [device_id], "offline", {"reason": reason})

    async def release_instance(self, instance: str, reason: str) -> list[int]:
        """Forget every session an instance held (it crashed or restarted): its
        devices go offline. Returns their ids."""
        async with self._db.begin() as connection:
            held = list(
                await connection.scalars(
                    select(device_sessions.c.device_id).where(
                        device_sessions.c.instance == instance
                    )
                )
            )
            if held:
                await _set_state(connection, held, "offline", {"reason": reason})
                await connection.execute(
                    delete(device_sessions).where(device_sessions.c.instance == instance)
                )
            return held

    async def address_of(self, device_id: int) -> str | None:
        """Where the instance holding the device's session takes internal calls."""
        async with self._db.read() as connection:
            return await connection.scalar(
                select(device_sessions.c.address).where(device_sessions.c.device_id == device_id)
            )

    async def record(self, device_id: int, event: str, detail: dict[str, Any]) -> None:
        async with self._db.begin() as connection:
            await record_events(connection, [device_id], event, detail)
