"""Session transitions go to the database in the order they happened, off the
sessions' own path: one writer task drains a queue, so a slow or absent database
delays the records, never a heartbeat."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from controller.store import DatabaseUnavailable

log = logging.getLogger("edgefleet.southbound.recorder")

Write = Callable[[], Awaitable[None]]


class Recorder:
    def __init__(self, retry_delay: float = 1.0, attempts: int = 30) -> None:
        self._queue: asyncio.Queue[Write] = asyncio.Queue()
        self._retry_delay = retry_delay
        self._attempts = attempts

    def submit(self, write: Write) -> None:
        self._queue.put_nowait(write)

    async def drained(self) -> None:
        """Wait until everything submitted so far is written (or given up)."""
        await self._queue.join()

    async def run(self) -> None:
        while True:
            write = await self._queue.get()
            try:
                await self._write(write)
            finally:
                self._queue.task_done()

    async def _write(self, write: Write) -> None:
        for attempt in range(1, self._attempts + 1):
            try:
                await write()
                return
            except DatabaseUnavailable:
                if attempt == self._attempts:
                    break
                await asyncio.sleep(self._retry_delay)
            except Exception:
                log.exception("could not record a session change")
                return
        log.error("database unavailable: a session change was not recorded")
