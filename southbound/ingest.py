"""Data ingest (docs/protocol.md section 7): batches of records into the store.

A listener of ``DataReceived`` (a batch over a device's WebSocket) and the
service ``device_http.py`` calls for ``POST /records`` and the railway
endpoint. Each batch is one transaction (``RecordStore.ingest``: one multi-row
insert, duplicates by (device, record id), missing files in one query, a row in
the ingest log), off the session's path: the answer goes back through the
session when the database has spoken. With the database away the answer is
``fail``, ``server busy``: the session stays up and the device retries later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from edgefleet.agent import protocol
from edgefleet.controller.store import Attempt, Store, StoreError
from edgefleet.southbound.events import DataIngested, DataReceived, SessionEvents

log = logging.getLogger("edgefleet.southbound.ingest")

CONCURRENCY = 8
"""Batches stored at once; more wait their turn (each holds a database connection)."""


class Ingest:
    def __init__(self, store: Store, events: SessionEvents, concurrency: int = CONCURRENCY) -> None:
        self._store = store
        self._events = events
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    def subscribe(self, events: SessionEvents) -> None:
        events.on(DataReceived, self._received)

    def _received(self, event: DataReceived) -> None:
        task = asyncio.create_task(self._answer(event), name="ingest")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, event: DataReceived) -> None:
        attempt = Attempt(event.device_id, event.host, "", "ws")
        answer, message = await self.store(event.device_id, event.records, event.rejected, attempt)
        await event.answer(answer, message)

    async def store(
        self,
        device_id: int,
        records: Sequence[protocol.Record],
        rejected: Sequence[tuple[str, str]],
        attempt: Attempt,
    ) -> tuple[dict[str, Any], str | None]:
        """Store a checked batch: (the answer's ``data``, None), or (an empty
        answer, ``server busy``) when the database cannot take it."""
        async with self._slots:
            try:
                outcome = await self._store.records.ingest(
                    device_id, records, len(rejected), attempt
                )
            except Exception as exc:
                # The database away (StoreError), or a bug: either way the device must
                # hear that nothing was stored, and will send the batch again later.
                if isinstance(exc, StoreError):
                    log.warning("batch not stored", extra={"device_id": device_id,
                                "records": len(records), "error": str(exc)})  # fmt: skip
                else:
                    log.exception("batch not stored", extra={"device_id": device_id})
                self._events.publish(
                    DataIngested(device_id, attempt.transport, 0, 0, len(rejected), 0, len(records))
                )
                return protocol.data_answer(), protocol.DATA_BUSY_MESSAGE
        self._events.publish(
            DataIngested(
                device_id,
                attempt.transport,
                len(outcome.accepted),
                len(outcome.duplicates),
                len(rejected),
                outcome.bytes,
                0,
            )
        )
        answer = protocol.data_answer(
            outcome.accepted, outcome.duplicates, list(rejected), outcome.missing_files
        )
        return answer, None

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
