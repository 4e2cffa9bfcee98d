"""Desired configuration to the devices, and their reports back (PROTOCOL.md section 8).

A listener of the session events, with one task of its own:

- a device that logs in listing ``config`` is queued for a push; one that does not
  is recorded as unable to take a configuration (a version-1 device), so the API
  can say why it is not in sync;
- the controller asks for pushes when a document changes (``push``: one device, or
  every member of a group);
- every ``config_report`` is stored as the device sent it.

The task drains the queue in batches of ``batch`` devices: one read of their
effective configurations, the batch's frames sent concurrently, then it yields to
the event loop for ``pause`` seconds before the next batch. A group of 10,000
members is thus 10,000 / ``batch`` rounds, with heartbeats and commands served
between them, never one long stall. A device queued twice before its turn is
sent once, the newest state. Nothing is retried here: a device that could not be
reached, or failed to apply its configuration, is sent it again at its next login
and with the next change.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from edgefleet.agent.protocol import ConfigReport
from edgefleet.controller.store import DatabaseUnavailable, Store
from edgefleet.controller.store.configs import Reported, in_sync
from edgefleet.southbound.events import ConfigReported, ConfigSynced, LoggedIn, SessionEvents
from edgefleet.southbound.sessions import SessionTable

log = logging.getLogger("edgefleet.southbound.config")

BATCH = 200
PAUSE = 0.0
REPORT_BATCH = 500
"""Reports stored in one transaction."""


@dataclass(frozen=True)
class _Report:
    device_id: int
    report: ConfigReport
    at: float


def _reported(item: _Report) -> Reported:
    report = item.report
    at = datetime.fromtimestamp(item.at, UTC).replace(tzinfo=None)
    return Reported(item.device_id, report.version, report.reported, report.status,
                    report.message, at)  # fmt: skip


class ConfigPush:
    def __init__(
        self,
        store: Store,
        sessions: SessionTable,
        batch: int = BATCH,
        pause: float = PAUSE,
        retry_delay: float = 1.0,
        events: SessionEvents | None = None,
    ) -> None:
        """``events``: where to announce ``ConfigSynced`` after each stored report
        (Kubernetes mode, for the status writer); none: nobody needs it, and the
        comparison with the desired configuration is not made."""
        self._events = events
        self._store = store
        self._sessions = sessions
        self._batch = batch
        self._pause = pause
        self._retry_delay = retry_delay
        self._due: dict[int, None] = {}
        """Devices waiting for a push, in order, each once."""
        self._unsupported: dict[int, None] = {}
        self._supported: dict[int, None] = {}
        self._reports: list[_Report] = []
        self._wake = asyncio.Event()

    def subscribe(self, events: SessionEvents) -> None:
        events.on(LoggedIn, self._logged_in)
        events.on(ConfigReported, self._reported)

    def push(self, device_ids: list[int]) -> None:
        """Queue a push to those of ``device_ids`` held here (the others are not
        connected here: they get theirs at login)."""
        for device_id in device_ids:
            if device_id in self._sessions:
                self._due[device_id] = None
        self._wake.set()

    # --- events ----------------------------------------------------------------------------

    def _logged_in(self, event: LoggedIn) -> None:
        device_id = event.device.device_id
        if "config" in event.extensions:
            self._supported[device_id] = None
            self._due[device_id] = None
        else:
            self._unsupported[device_id] = None
        self._wake.set()

    def _reported(self, event: ConfigReported) -> None:
        self._reports.append(_Report(event.device_id, event.report, event.at))
        self._wake.set()

    # --- the task ----------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._support()
                await self._store_reports()
                while self._due:
                    await self._push_batch()
                    await asyncio.sleep(self._pause)
            except DatabaseUnavailable:
                log.warning("database unavailable; configuration work waits")
                await asyncio.sleep(self._retry_delay)
                self._wake.set()
            except Exception:  # e.g. a row inserted meanwhile by the controller: again
                log.exception("configuration work failed; trying again")
                await asyncio.sleep(self._retry_delay)
                self._wake.set()

    async def _support(self) -> None:
        for flags, supported in ((self._supported, True), (self._unsupported, False)):
            if flags:
                device_ids = list(flags)
                await self._store.configs.set_supported(device_ids, supported)
                for device_id in device_ids:
                    flags.pop(device_id, None)
                    if not supported and self._events is not None:
                        self._events.publish(ConfigSynced(device_id, None, None))

    async def _store_reports(self) -> None:
        stored = [report.device_id for report in self._reports]
        await self._store_each_report()
        if self._events is not None and stored:
            await self._announce(list(dict.fromkeys(stored)))

    async def _announce(self, device_ids: list[int]) -> None:
        rows = await self._store.configs.devices(device_ids)
        effective = await self._store.configs.effective(device_ids)
        for device_id, row in rows.items():
            synced, _ = in_sync(row, effective[device_id].config)
            assert self._events is not None
            self._events.publish(ConfigSynced(device_id, row["reported_version"], synced))

    async def _store_each_report(self) -> None:
        """The reports waiting, ``REPORT_BATCH`` to a transaction (a group's change
        makes every member report at once: 10,000 commits one by one took the
        database 54 s). A batch that fails for another reason than an outage is
        stored one by one, so one device's odd report does not stop the others'."""
        while self._reports:
            batch = [_reported(item) for item in self._reports[:REPORT_BATCH]]
            try:
                await self._store.configs.reports(batch)
            except DatabaseUnavailable:
                raise
            except Exception:
                for one in batch:
                    try:
                        await self._store.configs.reports([one])
                    except DatabaseUnavailable:
                        raise
                    except Exception:
                        extra = {"device_id": one.device_id}
                        log.exception("configuration report not stored", extra=extra)
            del self._reports[: len(batch)]

    async def _push_batch(self) -> None:
        taken = list(self._due)[: self._batch]
        for device_id in taken:
            del self._due[device_id]
        device_ids = [d for d in taken if d in self._sessions]
        try:
            effective = await self._store.configs.effective(device_ids) if device_ids else {}
        except DatabaseUnavailable:
            for device_id in taken:  # sent when the database is back
                self._due.setdefault(device_id, None)
            raise
        sends = [
            self._sessions.send_config(device_id, state.version, state.config)
            for device_id, state in effective.items()
            if state.version > 0 or state.config  # never configured: nothing to send
        ]
        results = await asyncio.gather(*sends, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.warning("configuration not sent", exc_info=result)
