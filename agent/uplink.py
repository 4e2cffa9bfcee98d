"""Draining the record queue to the cloud (section 7), while the device is online.

One task for the agent's whole run. While a session is logged in it takes the
oldest records in order, as many as fit in one frame; uploads the files they
name that the cloud does not have yet (``HEAD`` first, ``PUT`` only what is
missing, each file remembered once the cloud has it); sends the batch as
``upload_data``; and removes from the queue exactly what the cloud answered for.
A batch without an answer (the connection dropped, the cloud was busy) stays
and goes again after a backoff; the cloud stores each ``record_id`` once, so a
resend duplicates nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from edgefleet.agent import core, protocol
from edgefleet.agent.file_upload import FileUploader, FileUploadFailed
from edgefleet.agent.oplog import logger
from edgefleet.agent.record_queue import RecordQueue

FRAME_BUDGET = protocol.MAX_FRAME_BYTES - 2048
"""JSON bytes of records in one frame: the frame limit less the envelope."""

BATCH_INTERVAL = 0.25
"""Seconds at least between two batches: records published meanwhile join the next
one, and a device draining a backlog stays far below the cloud's frame-rate limit
(20 a second) with room for its heartbeats — up to 4 full frames a second."""

Send = Callable[[list[dict[str, Any]]], Awaitable[core.DataAnswered]]


class UplinkFailed(Exception):
    """This batch did not get through now; it is tried again after a backoff."""


class Uplink:
    def __init__(self, queue: RecordQueue, files: FileUploader, backoff: core.Backoff) -> None:
        self.queue = queue
        self._files = files
        self._backoff = backoff
        self._send: Send | None = None
        self._online = asyncio.Event()
        self._wake = asyncio.Event()
        self.batches_sent = 0

    def wake(self) -> None:
        """Something was queued."""
        self._wake.set()

    def attach(self, send: Send) -> None:
        """A session logged in: batches go through ``send``."""
        self._send = send
        self._online.set()
        self.wake()

    def detach(self) -> None:
        self._send = None
        self._online.clear()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = float("-inf")
        while True:
            await self._online.wait()
            await asyncio.sleep(max(0.0, last + BATCH_INTERVAL - loop.time()))
            self._wake.clear()
            batch = await asyncio.to_thread(self.queue.batch, FRAME_BUDGET)
            if not batch:
                await self._wake.wait()
                continue
            last = loop.time()
            try:
                await self._upload(batch)
            except UplinkFailed as exc:
                delay = self._backoff.next_delay()
                logger.warning("upload of %d records failed (%s); again in %.1f s",
                               len(batch), exc, delay)  # fmt: skip
                await asyncio.sleep(delay)
            else:
                self._backoff.reset()

    async def _upload(self, batch: list[dict[str, Any]]) -> None:
        digests = list(dict.fromkeys(sha for record in batch for sha in record.get("files", ())))
        for file in await asyncio.to_thread(self.queue.files_to_upload, digests):
            await self._send_file(file.sha256, check_first=True)
        send = self._send
        if send is None:
            raise UplinkFailed("offline")
        try:
            answer = await send(batch)
        except (TimeoutError, ConnectionError) as exc:
            raise UplinkFailed(f"no answer: {type(exc).__name__}") from exc
        if not answer.success:
            raise UplinkFailed(answer.message or "refused")
        data = answer.data
        for sha256 in data.get("missing_files", ()):
            await self._send_file(sha256, check_first=False)
        rejected = [r for r in data.get("rejected", ()) if isinstance(r, dict)]
        for rejection in rejected:
            logger.error("record %s rejected by the cloud: %s", rejection.get("record_id"),
                         rejection.get("message"))  # fmt: skip
        done = [
            *data.get("accepted", ()),
            *data.get("duplicates", ()),
            *(str(r.get("record_id")) for r in rejected),
        ]
        answered = [record_id for record_id in done if isinstance(record_id, str)]
        if not answered:
            raise UplinkFailed("the answer named none of the records")
        await asyncio.to_thread(self.queue.remove, answered)
        self.batches_sent += 1

    async def _send_file(self, sha256: str, check_first: bool) -> None:
        file = await asyncio.to_thread(self.queue.file, sha256)
        if file is None:
            return  # not ours (the record's digest names a file we never had)
        try:
            if not (check_first and await asyncio.to_thread(self._files.has, sha256)):
                await asyncio.to_thread(self._files.send, file)
        except FileUploadFailed as exc:
            raise UplinkFailed(str(exc)) from exc
        await asyncio.to_thread(self.queue.uploaded, sha256)
