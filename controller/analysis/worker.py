"""The analysis worker: runs the classifier on the image files of records of the
chosen kinds (``--analyse-kinds``), in the background, never on the upload path.

Theory of operation
-------------------
The queue is the database (``AnalysisStore``): a record of an analysed kind waits
in status ``received``; the worker polls for the due ones, oldest first, and
runs at most ``concurrency`` at once. A record is ``analysed`` when each of its
image files has a classification (from the cache, or from one model call that
is then cached); a failure — the classifier, a file that has not arrived yet —
counts an attempt and puts the next one ``retry_delay * 2**(attempts-1)`` away;
after ``max_attempts`` the record is ``failed`` with the last error. A restart
loses nothing: what was running is simply due again.

It runs in the controller process (``edgefleet serve``, or the controller
Deployment on Kubernetes: one replica, so no two workers take the same record).
"""

from __future__ import annotations

import asyncio
import logging

from edgefleet.controller.analysis.cache import ClassificationCache
from edgefleet.controller.analysis.classifier import ClassifierFailed
from edgefleet.controller.store import Store, StoreError
from edgefleet.controller.store.blobs import BlobMissing, FileStore
from edgefleet.controller.store.database import utcnow

log = logging.getLogger("edgefleet.analysis")

POLL_INTERVAL = 1.0


class NotReady(Exception):
    """A file of the record has not arrived yet."""


class AnalysisWorker:
    def __init__(
        self,
        store: Store,
        files: FileStore,
        cache: ClassificationCache,
        kinds: tuple[str, ...],
        *,
        concurrency: int = 2,
        max_attempts: int = 5,
        retry_delay: float = 30.0,
        max_file_bytes: int = 10 * 1024 * 1024,
        count: object = None,
    ) -> None:
        self._store = store
        self._files = files
        self._cache = cache
        self.kinds = kinds
        self._slots = asyncio.Semaphore(concurrency)
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self._max_file_bytes = max_file_bytes
        self._count = count or (lambda result: None)
        self._running: set[int] = set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            while True:
                try:
                    due = await self._store.analysis.due(self.kinds, 100, utcnow())
                except StoreError:
                    log.warning("analysis queue unreadable: database unavailable")
                    due = []
                due = [record_id for record_id in due if record_id not in self._running]
                for record_id in due:
                    await self._slots.acquire()
                    self._running.add(record_id)
                    tasks.create_task(self._analyse(record_id))
                if not due:
                    await asyncio.sleep(POLL_INTERVAL)

    async def _analyse(self, record_id: int) -> None:
        try:
            try:
                await self._classify_files(record_id)
                await self._store.analysis.finish(record_id, "analysed")
                self._count("analysed")
            except (ClassifierFailed, NotReady, BlobMissing) as exc:
                await self._failed(record_id, str(exc) or type(exc).__name__)
        except StoreError:
            log.warning("analysis not recorded: database unavailable", extra={"record": record_id})
        finally:
            self._running.discard(record_id)
            self._slots.release()

    async def _classify_files(self, record_id: int) -> None:
        for file in await self._store.analysis.files_of(record_id):
            if file["content_type"] is None:
                raise NotReady(f"file {file['sha256']} has not been uploaded yet")
            if not file["content_type"].startswith("image/"):
                continue
            if await self._cache.cached(file["sha256"]) is not None:
                continue  # the model is never asked twice about one image
            chunks = [chunk async for chunk in self._files.read(file["sha256"])]
            image = b"".join(chunks)[: self._max_file_bytes]
            await self._cache.classify(file["sha256"], image, file["content_type"])

    async def _failed(self, record_id: int, error: str) -> None:
        attempts = await self._store.analysis.retry_later(record_id, self._retry_delay, error)
        if attempts >= self._max_attempts:
            await self._store.analysis.finish(record_id, "failed", error)
            self._count("failed")
            log.warning("analysis failed", extra={"record": record_id, "error": error})
        else:
            self._count("retried")
