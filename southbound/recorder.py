"""The device log and session rows, written from the session events.

Session changes go to the database in the order they happened, off the sessions'
own path: one writer task drains a queue in batches (one transaction per batch),
so a reconnect storm costs a few transactions, not one per device, and a slow or
absent database delays the records, never a heartbeat.

Status uploads come every 15 s; the device log keeps one in
``status_event_interval`` seconds per device. A successful ``update`` (section 9)
sets the device's ``business_version`` to the version it answered with.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from edgefleet.controller.store import DatabaseUnavailable, Store
from edgefleet.controller.store.sessions import SessionChange
from edgefleet.southbound.events import (
    CommandFinished,
    CommandSent,
    CredentialVerified,
    Left,
    LoggedIn,
    LoginFailed,
    Reattached,
    SessionEvents,
    StateChanged,
    StatusReceived,
)

log = logging.getLogger("edgefleet.southbound.recorder")

BATCH = 2000
STATUS_EVENT_INTERVAL = 600.0


def _when(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC).replace(tzinfo=None)


class Recorder:
    def __init__(
        self,
        store: Store,
        instance: str,
        address: Callable[[], str],
        retry_delay: float = 1.0,
        status_event_interval: float = STATUS_EVENT_INTERVAL,
    ) -> None:
        self._store = store
        self._instance = instance
        self._address = address
        """Where this instance takes internal calls, recorded with each session."""
        self._queue: asyncio.Queue[SessionChange] = asyncio.Queue()
        self._retry_delay = retry_delay
        self._status_event_interval = status_event_interval
        self._last_status_event: dict[int, float] = {}

    def subscribe(self, events: SessionEvents) -> None:
        events.on(LoggedIn, self._logged_in)
        events.on(Reattached, self._reattached)
        events.on(StateChanged, self._state_changed)
        events.on(StatusReceived, self._status)
        events.on(Left, self._left)
        events.on(LoginFailed, self._login_failed)
        events.on(CommandSent, self._command_sent)
        events.on(CommandFinished, self._command_finished)
        events.on(CredentialVerified, self._verified)

    # --- events -> session changes --------------------------------------------------------

    def _held(
        self, device_id: int, peer: str, state: str, at: float, by: str | None = None
    ) -> None:
        """``by``: how the device logged in (``password`` or ``token``); None when it
        did not just now (its session is recorded again)."""
        detail = {"instance": self._instance, "peer": peer}
        if by is not None:
            detail["by"] = by
        when = _when(at)
        self.submit(
            SessionChange("connected", device_id, "connected", detail, self._address(), when)
        )
        self.submit(SessionChange("state", device_id, state, at=when))

    def _logged_in(self, event: LoggedIn) -> None:
        by = "token" if event.by_token else "password"
        self._held(event.device.device_id, event.peer, "online", event.at, by)

    def _reattached(self, event: Reattached) -> None:
        self._held(event.device_id, event.peer, event.state, event.at)

    def _state_changed(self, event: StateChanged) -> None:
        detail = {"missed_heartbeats": event.failures} if event.failures else {}
        self.submit(
            SessionChange("state", event.device_id, event.state, detail, at=_when(event.at))
        )

    def _status(self, event: StatusReceived) -> None:
        last = self._last_status_event.get(event.device_id, float("-inf"))
        if event.at - last < self._status_event_interval:
            return
        self._last_status_event[event.device_id] = event.at
        self._event(event.device_id, "status_uploaded", _status_detail(event))

    def _left(self, event: Left) -> None:
        self._last_status_event.pop(event.device_id, None)
        detail = {"reason": event.cause}
        self.submit(
            SessionChange("disconnected", event.device_id, "offline", detail, at=_when(event.at))
        )

    def _login_failed(self, event: LoginFailed) -> None:
        if event.device_id is not None:
            self._event(event.device_id, "login_failed", {"reason": event.message})

    def _command_sent(self, event: CommandSent) -> None:
        self._event(event.device_id, "command_sent", {"order": event.order})

    def _command_finished(self, event: CommandFinished) -> None:
        result = event.result
        detail = {"order": event.order, "status": result.status, "message": result.message}
        self._event(event.device_id, "command_result", detail)
        version = event.installed_version()
        if version is not None:
            self.submit(
                SessionChange(
                    "software", event.device_id, "software_updated", {"business_version": version}
                )
            )

    def _verified(self, event: CredentialVerified) -> None:
        detail = {"credential_version": event.credential_version, "digest": event.digest}
        self.submit(SessionChange("verified", event.device_id, "verified", detail))

    def _event(self, device_id: int, name: str, detail: dict[str, Any]) -> None:
        self.submit(SessionChange("event", device_id, name, detail, at=_when(time.time())))

    # --- the writer -------------------------------------------------------------------------

    def submit(self, change: SessionChange) -> None:
        self._queue.put_nowait(change)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def drained(self) -> None:
        """Wait until everything submitted so far is written."""
        await self._queue.join()

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[SessionChange]) -> None:
        """Retry while the database is away: the changes are the device log."""
        while True:
            try:
                await self._store.sessions.apply(self._instance, batch)
                return
            except DatabaseUnavailable:
                log.warning(
                    "database unavailable; session changes wait", extra={"changes": len(batch)}
                )
                await asyncio.sleep(self._retry_delay)
            except Exception:
                log.exception("could not record session changes", extra={"changes": len(batch)})
                return


def _status_detail(event: StatusReceived) -> dict[str, Any]:
    return {
        "cpu_percent": event.utilisation.cpu_percent,
        "memory_used_percent": event.utilisation.memory_used_percent,
        "disk_used_percent": event.utilisation.disk_used_percent,
    }
