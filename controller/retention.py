"""Retention of devices' data: records older than ``--record-retention-days`` are
deleted in batches (their file links and analysis with them), and a file no
record names any more is deleted after the same time.

One pass every ``--retention-interval`` seconds, in the controller process. A
file's index row goes before its bytes, so no request is ever told the cloud
has a file it is deleting; the bytes of a file uploaded again in between are
left alone (its row is back).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from edgefleet.controller.store import Store, StoreError
from edgefleet.controller.store.blobs import FileStore
from edgefleet.controller.store.database import utcnow

log = logging.getLogger("edgefleet.retention")


class Retention:
    def __init__(self, store: Store, files: FileStore, days: float, interval: float) -> None:
        self._store = store
        self._files = files
        self._keep = timedelta(days=days)
        self._interval = interval

    async def run(self) -> None:
        while True:
            try:
                records, files = await self.run_once()
                if records or files:
                    log.info("retention pass", extra={"records": records, "files": files})
            except StoreError:
                log.warning("retention pass skipped: database unavailable")
            await asyncio.sleep(self._interval)

    async def run_once(self) -> tuple[int, int]:
        """One pass: (records deleted, files deleted)."""
        cutoff = utcnow() - self._keep
        records = 0
        while deleted := await self._store.records.expire_records(cutoff):
            records += deleted
        files = 0
        while digests := await self._store.records.unreferenced_files(cutoff):
            await self._store.records.forget_files(digests)
            for sha256 in digests:
                if await self._store.records.file(sha256) is None:
                    await self._files.delete(sha256)
                    files += 1
            if len(digests) < 1000:
                break
        return records, files
