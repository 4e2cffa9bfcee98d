"""Data ingest (docs/protocol.md section 7): batches of records into the store.

A listener of ``DataReceived`` (a batch over a device's WebSocket) and the
service ``device_http.py`` calls for ``POST /records`` and the railway
endpoint. Batches are stored off the session's path, and the answer goes back
through the session once the database has spoken.

Group commit: a few writer tasks take the batches that wait — from any devices —
and store each group in one transaction (``RecordStore.ingest_many``: one query
for duplicates, one multi-row insert, one for missing files, the ingest-log
rows), each batch with its own answer. Idle, a group is one batch and the
answer as quick as a transaction; under load the groups grow and a
transaction's round trips are paid once for many batches. With the database
away every batch of the group is answered ``fail``, ``server busy``: the
sessions stay up and the devices retry later. Any other failure of a group is
retried batch by batch, so one bad batch cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgefleet.agent import protocol
from edgefleet.controller.store import Attempt, Store, StoreError
from edgefleet.controller.store.records import Batch, BatchOutcome
from edgefleet.southbound.events import DataIngested, DataReceived, SessionEvents

log = logging.getLogger("edgefleet.southbound.ingest")

WRITERS = 4
"""Transactions at once (each holds a database connection)."""
GROUP = 64
"""Most batches in one transaction."""

Answer = tuple[dict[str, Any], str | None]


@dataclass
class _Waiting:
    batch: Batch
    rejected: Sequence[tuple[str, str]]
    answer: asyncio.Future[Answer]


class Ingest:
    def __init__(
        self, store: Store, events: SessionEvents, writers: int = WRITERS, group: int = GROUP
    ) -> None:
        self._store = store
        self._events = events
        self._writer_count = writers
        self._group = group
        self._waiting: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._writers: list[asyncio.Task[None]] = []
        self._answering: set[asyncio.Task[None]] = set()

    def subscribe(self, events: SessionEvents) -> None:
        events.on(DataReceived, self._received)

    def _received(self, event: DataReceived) -> None:
        task = asyncio.create_task(self._answer(event), name="ingest-answer")
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

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
    ) -> Answer:
        """Store a checked batch: (the answer's ``data``, None), or (an empty
        answer, ``server busy``) when the database cannot take it."""
        if not self._writers:
            self._writers = [
                asyncio.create_task(self._write(), name=f"ingest-writer-{n}")
                for n in range(self._writer_count)
            ]
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        batch = Batch(device_id, records, len(rejected), attempt)
        self._waiting.put_nowait(_Waiting(batch, rejected, answer))
        return await answer

    async def _write(self) -> None:
        while True:
            group = [await self._waiting.get()]
            while len(group) < self._group and not self._waiting.empty():
                group.append(self._waiting.get_nowait())
            try:
                outcomes = await self._store.records.ingest_many([w.batch for w in group])
            except StoreError as exc:
                log.warning("batches not stored", extra={"batches": len(group), "error": str(exc)})
                for waiting in group:
                    self._failed(waiting)
            except Exception:
                # A bug, or a batch the database refuses: one at a time, the others go in.
                for waiting in group:
                    await self._write_alone(waiting)
            else:
                for waiting, outcome in zip(group, outcomes, strict=True):
                    self._stored(waiting, outcome)

    async def _write_alone(self, waiting: _Waiting) -> None:
        try:
            [outcome] = await self._store.records.ingest_many([waiting.batch])
        except Exception as exc:
            if isinstance(exc, StoreError):
                log.warning("batch not stored", extra={"error": str(exc)})
            else:
                log.exception("batch not stored", extra={"device_id": waiting.batch.device_id})
            self._failed(waiting)
        else:
            self._stored(waiting, outcome)

    def _stored(self, waiting: _Waiting, outcome: BatchOutcome) -> None:
        batch = waiting.batch
        self._events.publish(
            DataIngested(
                batch.device_id,
                batch.attempt.transport,
                len(outcome.accepted),
                len(outcome.duplicates),
                batch.rejected,
                outcome.bytes,
                0,
            )
        )
        answer = protocol.data_answer(
            outcome.accepted, outcome.duplicates, list(waiting.rejected), outcome.missing_files
        )
        if not waiting.answer.done():
            waiting.answer.set_result((answer, None))

    def _failed(self, waiting: _Waiting) -> None:
        batch = waiting.batch
        self._events.publish(
            DataIngested(
                batch.device_id, batch.attempt.transport, 0, 0, batch.rejected, 0,
                len(batch.records),
            )
        )  # fmt: skip
        if not waiting.answer.done():
            waiting.answer.set_result((protocol.data_answer(), protocol.DATA_BUSY_MESSAGE))

    async def stop(self) -> None:
        tasks = [*self._writers, *self._answering]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._writers = []
        while not self._waiting.empty():
            self._failed(self._waiting.get_nowait())
