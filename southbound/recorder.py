"""Session changes go to the database in the order they happened, off the
sessions' own path: one writer task drains a queue in batches (one transaction
per batch), so a reconnect storm costs a few transactions, not one per device,
and a slow or absent database delays the records, never a heartbeat."""

from __future__ import annotations

import asyncio
import logging

from edgefleet.controller.store import DatabaseUnavailable, Store
from edgefleet.controller.store.sessions import SessionChange

log = logging.getLogger("edgefleet.southbound.recorder")

BATCH = 2000


class Recorder:
    def __init__(self, store: Store, instance: str, retry_delay: float = 1.0) -> None:
        self._store = store
        self._instance = instance
        self._queue: asyncio.Queue[SessionChange] = asyncio.Queue()
        self._retry_delay = retry_delay

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
