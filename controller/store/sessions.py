"""What the southbound writes: device credentials for login, who holds which
session, device state transitions and their events.

Session changes arrive in bursts (a reconnect storm is 10,000 logins in seconds),
so they are applied in batches: one transaction writes a whole batch, with one
UPDATE per resulting state, one session-row delete and insert, and one
multi-row event insert.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.events import record_events
from edgefleet.controller.store.schema import (
    device_events,
    device_sessions,
    devices,
    southbound_instances,
)

HOLDERS_CHUNK = 1000
"""Device ids per query when looking up who holds many sessions."""

CREDENTIAL_COLUMNS = [
    devices.c.device_id,
    devices.c.secret,
    devices.c.credential_version,
    devices.c.disabled,
    devices.c.name,
    devices.c.type,
    devices.c.k8s_namespace,
    devices.c.k8s_name,
    devices.c.verified_digest,
]
# Built once: a reused statement skips SQLAlchemy's per-call construction.
CREDENTIALS_BY_ID = select(*CREDENTIAL_COLUMNS).where(devices.c.device_id == bindparam("device_id"))
# Only for the version it was verified under: a credential changed meanwhile wins.
REMEMBER_VERIFIED = (
    update(devices)
    .where(
        devices.c.device_id == bindparam("id"),
        devices.c.credential_version == bindparam("version"),
    )
    .values(verified_digest=bindparam("digest"))
)
CREDENTIALS_BY_HARDWARE = select(*CREDENTIAL_COLUMNS).where(
    devices.c.hardware_sn == bindparam("sn"), devices.c.hardware_model == bindparam("model")
)


@dataclass(frozen=True)
class SessionChange:
    """One thing that happened to a device's session, for the database.

    ``kind`` is ``connected`` (the session is held at ``address``), ``state``
    (online/unknown), ``disconnected`` (offline, if the session was held here),
    ``event`` (only a log line, e.g. ``login_failed`` or ``command_sent``) or
    ``verified`` (a verified-credential digest to remember, in ``detail``; no log
    line: the device log must never hold a digest of a password) or ``software``
    (the device now runs ``detail["business_version"]``, after an ``update``).
    """

    kind: str
    device_id: int
    event: str
    detail: dict[str, Any] = field(default_factory=dict)
    address: str = ""
    at: datetime = field(default_factory=utcnow)


async def _set_state(connection: AsyncConnection, device_ids: Sequence[int], state: str) -> None:
    for start in range(0, len(device_ids), 1000):
        chunk = sorted(device_ids[start : start + 1000])
        await connection.execute(
            update(devices).where(devices.c.device_id.in_(chunk)).values(state=state)
        )


class SessionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def credentials_by_hardware(self, sn: str, model: str) -> dict[str, Any] | None:
        """The login view of a device found by its serial number and model."""
        async with self._db.read() as connection:
            result = await connection.execute(CREDENTIALS_BY_HARDWARE, {"sn": sn, "model": model})
            row = result.mappings().first()
        return dict(row) if row else None

    async def credentials_of(self, device_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The login view of many devices at once, by id (a reconnect storm's batch)."""
        found: dict[int, dict[str, Any]] = {}
        async with self._db.read() as connection:
            for start in range(0, len(device_ids), 1000):
                rows = await connection.execute(
                    select(*CREDENTIAL_COLUMNS).where(
                        devices.c.device_id.in_(device_ids[start : start + 1000])
                    )
                )
                found.update((row["device_id"], dict(row)) for row in rows.mappings())
        return found

    async def address_of(self, device_id: int) -> str | None:
        """Where the instance holding the device's session takes internal calls."""
        async with self._db.read() as connection:
            return await connection.scalar(
                select(device_sessions.c.address).where(device_sessions.c.device_id == device_id)
            )

    async def holders(self, device_ids: Sequence[int]) -> dict[str, list[int]]:
        """The devices of ``device_ids`` that have a session, by the address of the
        instance holding it."""
        held: dict[str, list[int]] = {}
        async with self._db.read() as connection:
            for start in range(0, len(device_ids), HOLDERS_CHUNK):
                rows = await connection.execute(
                    select(device_sessions.c.address, device_sessions.c.device_id).where(
                        device_sessions.c.device_id.in_(device_ids[start : start + HOLDERS_CHUNK])
                    )
                )
                for address, device_id in rows:
                    held.setdefault(address, []).append(device_id)
        return held

    async def apply(self, instance: str, changes: Iterable[SessionChange]) -> None:
        """Write a batch of changes made by ``instance``, in one transaction.

        The rows end as the last change of each device says; every change is an
        event. Lock order keeps MySQL free of deadlocks with REST writes: devices
        rows first (by the UPDATEs, in id order), then session rows. Touching a
        session row first would take a shared lock on its device through the
        foreign key, and two transactions cannot both upgrade it.

        A device deleted while its changes waited for the batch makes the batch's
        rows fail their foreign keys. What the changes said of it went with it; the
        rest of the batch (up to a thousand other devices' logins, states and log
        lines) is written again without them.
        """
        changes = list(changes)
        while True:
            try:
                await self._apply(instance, changes)
                return
            except IntegrityError:
                existing = await self.credentials_of(sorted({c.device_id for c in changes}))
                kept = [c for c in changes if c.device_id in existing]
                if len(kept) == len(changes):
                    raise
                changes = kept

    async def _apply(self, instance: str, changes: list[SessionChange]) -> None:
        verified = [c for c in changes if c.kind == "verified"]
        changes = [c for c in changes if c.kind != "verified"]
        state: dict[int, str] = {}
        session: dict[int, SessionChange] = {}  # the last connect or disconnect
        for change in changes:
            if change.kind == "connected":
                session[change.device_id] = change
                state[change.device_id] = "online"
            elif change.kind == "disconnected":
                session[change.device_id] = change
            elif change.kind == "state":
                state[change.device_id] = change.event
        connected = {d: c for d, c in session.items() if c.kind == "connected"}
        leaving = [d for d, c in session.items() if c.kind == "disconnected"]
        async with self._db.begin() as connection:
            ours = set(await self._held_by(connection, instance, leaving))
            # A session opened and closed within this batch was ours too.
            ours |= {c.device_id for c in changes if c.kind == "connected"} & set(leaving)
            for device_id in leaving:
                if device_id in ours:
                    state[device_id] = "offline"
                else:  # superseded at another instance, which now owns the row
                    state.pop(device_id, None)
            by_state: dict[str, list[int]] = {}
            for device_id, value in state.items():
                by_state.setdefault(value, []).append(device_id)
            for value, device_ids in sorted(by_state.items()):
                await _set_state(connection, device_ids, value)
            gone = sorted(ours | connected.keys())
            for start in range(0, len(gone), 1000):
                await connection.execute(
                    delete(device_sessions).where(
                        device_sessions.c.device_id.in_(gone[start : start + 1000])
                    )
                )
            if connected:
                await connection.execute(
                    insert(device_sessions),
                    [
                        {
                            "device_id": d,
                            "instance": instance,
                            "address": c.address,
                            "connected_at": c.at,
                        }
                        for d, c in sorted(connected.items())
                    ],
                )
            if verified:
                await connection.execute(
                    REMEMBER_VERIFIED,
                    [
                        {
                            "id": c.device_id,
                            "version": c.detail["credential_version"],
                            "digest": c.detail["digest"],
                        }
                        for c in verified
                    ],
                )
            for change in changes:
                if change.kind == "software":
                    await connection.execute(
                        update(devices)
                        .where(devices.c.device_id == change.device_id)
                        .values(
                            business_version=change.detail["business_version"],
                            business_updated_at=change.at,
                            updated_at=change.at,
                        )
                    )
            rows = [
                {"device_id": c.device_id, "at": c.at, "event": c.event, "detail": c.detail}
                for c in changes
            ]
            for start in range(0, len(rows), 1000):
                await connection.execute(insert(device_events), rows[start : start + 1000])

    @staticmethod
    async def _held_by(
        connection: AsyncConnection, instance: str, device_ids: list[int]
    ) -> list[int]:
        held: list[int] = []
        for start in range(0, len(device_ids), 1000):
            held += await connection.scalars(
                select(device_sessions.c.device_id).where(
                    device_sessions.c.device_id.in_(device_ids[start : start + 1000]),
                    device_sessions.c.instance == instance,
                )
            )
        return held

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
                await _set_state(connection, held, "offline")
                await record_events(connection, held, "offline", {"reason": reason})
                await connection.execute(
                    delete(device_sessions).where(device_sessions.c.instance == instance)
                )
            return held

    # --- instances ---------------------------------------------------------------

    async def beat(self, instance: str) -> bool:
        """``instance`` is alive now. False when it had no row: a first beat, or
        another instance took it for lost and released its sessions.

        The insert of a missing row has a transaction of its own: in MySQL the
        UPDATE that found no row holds a gap lock until it commits, and two
        instances starting at once (a Deployment's replicas) would each wait for
        the other's gap to insert — a deadlock that failed one's start."""
        async with self._db.begin() as connection:
            result = await connection.execute(
                update(southbound_instances)
                .where(southbound_instances.c.instance == instance)
                .values(seen_at=utcnow())
            )
        if result.rowcount > 0:
            return True
        try:
            async with self._db.begin() as connection:
                await connection.execute(
                    insert(southbound_instances), {"instance": instance, "seen_at": utcnow()}
                )
        except IntegrityError:
            return True  # it was there after all (inserted in between): alive either way
        return False

    async def live_instances(self, seen_within: float) -> int:
        """How many instances beat within the last ``seen_within`` seconds: the
        processes sharing the status-write budget (``controller.kube.budget``)."""
        cutoff = utcnow() - timedelta(seconds=seen_within)
        async with self._db.read() as connection:
            count = await connection.scalar(
                select(func.count())
                .select_from(southbound_instances)
                .where(southbound_instances.c.seen_at >= cutoff)
            )
        return int(count or 0)

    async def forget_instance(self, instance: str) -> None:
        """A clean stop: the instance released its sessions itself."""
        async with self._db.begin() as connection:
            await connection.execute(
                delete(southbound_instances).where(southbound_instances.c.instance == instance)
            )

    async def release_lost(self, silent_for: float) -> list[dict[str, Any]]:
        """Release the sessions of every instance silent for ``silent_for`` seconds
        (its pod died and came back, if at all, under another name); their devices
        go offline with the reason ``instance_lost``. Returns those devices' ids and
        resource names."""
        cutoff = utcnow() - timedelta(seconds=silent_for)
        async with self._db.read() as connection:
            lost = list(
                await connection.scalars(
                    select(southbound_instances.c.instance).where(
                        southbound_instances.c.seen_at < cutoff
                    )
                )
            )
        released: list[int] = []
        for instance in lost:
            released += await self.release_instance(instance, "instance_lost")
            await self.forget_instance(instance)
        if not released:
            return []
        async with self._db.read() as connection:
            rows = await connection.execute(
                select(devices.c.device_id, devices.c.k8s_namespace, devices.c.k8s_name).where(
                    devices.c.device_id.in_(released)
                )
            )
            return [dict(row) for row in rows.mappings()]

    async def offline_unheld(self, device_ids: Sequence[int]) -> set[int]:
        """Those of ``device_ids`` the database has offline with no session anywhere."""
        if not device_ids:
            return set()
        held = select(device_sessions.c.device_id).where(
            device_sessions.c.device_id == devices.c.device_id
        )
        async with self._db.read() as connection:
            rows = await connection.scalars(
                select(devices.c.device_id).where(
                    devices.c.device_id.in_(list(device_ids)),
                    devices.c.state == "offline",
                    ~held.exists(),
                )
            )
            return set(rows)
