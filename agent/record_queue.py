"""The agent's durable queue of records waiting to go up (DATA.md, section 7).

One SQLite database in ``--state-dir`` (``records.db``, WAL, ``synchronous=FULL``):
``put`` returns once the record and its files are on disk, so a crash, a reboot
or a week offline loses nothing that ``put`` returned for. A record leaves the
queue only when the cloud has answered for it (accepted, duplicate or
rejected), so a batch whose answer was lost is simply sent again — the cloud
stores a ``record_id`` once.

Files are kept beside it, in ``files/<sha256>``, hard-linked or copied at
``put`` (moved, for the spool folder), and are remembered once uploaded, so a
restart resumes without sending a file twice.

The queue is bounded (``max_bytes``: records plus their files): when a new
record passes it, the oldest records go first, each drop counted (the count
survives restarts) and logged. A device must never fill its own disk.

Every method blocks (SQLite, file copies): the agent calls them in a thread.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgefleet.agent import protocol
from edgefleet.agent.oplog import logger

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS record_files (
    seq INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (seq, sha256)
);
CREATE INDEX IF NOT EXISTS record_files_sha256 ON record_files (sha256);
CREATE TABLE IF NOT EXISTS files (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    uploaded INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
BATCH_RECORDS = 500
HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class QueuedFile:
    sha256: str
    path: Path
    size: int
    content_type: str


@dataclass(frozen=True)
class QueueStats:
    depth: int
    bytes: int
    dropped: int


class RecordQueue:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.files_dir = directory / "files"
        self.files_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            directory / "records.db", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # put returns once it is on disk
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- putting -----------------------------------------------------------------------

    def put(
        self,
        kind: str,
        payload: dict[str, Any],
        files: Sequence[str | Path] = (),
        record_id: str | None = None,
        at: datetime | str | None = None,
        move_files: bool = False,
    ) -> str:
        """Queue a record; returns its id once it is on disk. Raises
        ``protocol.RecordRejected`` for a record the cloud would reject, and
        ``OSError`` for a file that cannot be read."""
        kept = [self._keep(Path(path), move_files) for path in files]
        when = at if isinstance(at, str) else protocol.rfc3339(at or datetime.now(UTC))
        raw = {
            "record_id": record_id or f"{time.time_ns() // 1000:x}-{secrets.token_hex(4)}",
            "kind": kind,
            "at": when,
            "payload": payload,
            "files": [file.sha256 for file in kept],
        }
        record = protocol.read_record(raw)
        body = protocol.encode(record.wire())
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for file in kept:
                self._db.execute(
                    "INSERT OR IGNORE INTO files (sha256, size, content_type) VALUES (?, ?, ?)",
                    (file.sha256, file.size, file.content_type),
                )
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO records (record_id, body, size) VALUES (?, ?, ?)",
                (record.record_id, body, len(body.encode())),
            )
            if cursor.rowcount:
                self._db.executemany(
                    "INSERT OR IGNORE INTO record_files (seq, sha256) VALUES (?, ?)",
                    [(cursor.lastrowid, sha) for sha in record.files],
                )
            else:  # the id is queued already: it goes once, and these files stay only if named
                self._drop_unnamed(record.files)
            self._drop_oldest()
        return record.record_id

    def _keep(self, path: Path, move: bool) -> QueuedFile:
        """Hash the file and keep it under its digest in the queue's folder."""
        digest, size = hashlib.sha256(), 0
        with path.open("rb") as source:
            while chunk := source.read(HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        sha256 = digest.hexdigest()
        target = self.files_dir / sha256
        if not target.exists():
            temporary = self.files_dir / f".{sha256}.{secrets.token_hex(4)}"
            if move:
                try:
                    os.replace(path, temporary)
                except OSError:  # another filesystem
                    shutil.copyfile(path, temporary)
            else:
                try:
                    os.link(path, temporary)
                except OSError:
                    shutil.copyfile(path, temporary)
            with temporary.open("rb") as kept:
                os.fsync(kept.fileno())
            os.replace(temporary, target)
        if move:
            path.unlink(missing_ok=True)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return QueuedFile(sha256, target, size, content_type)

    def _drop_oldest(self) -> None:
        """Inside ``put``'s transaction: drop the oldest records while over the bound."""
        while self._size() > self.max_bytes:
            oldest = self._db.execute(
                "SELECT seq, record_id FROM records ORDER BY seq LIMIT 1"
            ).fetchone()
            if oldest is None:
                return
            seq, record_id = oldest
            self._forget([seq])
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES ('dropped', 1) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1"
            )
            logger.warning("queue over %d bytes: dropped the oldest record %s", self.max_bytes,
                           record_id)  # fmt: skip

    def _size(self) -> int:
        (records,) = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM records").fetchone()
        (files,) = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM files").fetchone()
        return records + files

    def _forget(self, seqs: Sequence[int]) -> None:
        """Delete records and the files no queued record names any more."""
        marks = ",".join("?" * len(seqs))
        digests = [
            row[0]
            for row in self._db.execute(
                f"SELECT DISTINCT sha256 FROM record_files WHERE seq IN ({marks})", seqs
            )
        ]
        self._db.execute(f"DELETE FROM record_files WHERE seq IN ({marks})", seqs)
        self._db.execute(f"DELETE FROM records WHERE seq IN ({marks})", seqs)
        self._drop_unnamed(digests)

    def _drop_unnamed(self, digests: Sequence[str]) -> None:
        """Forget the files of ``digests`` that no queued record names."""
        for sha256 in digests:
            named = self._db.execute(
                "SELECT 1 FROM record_files WHERE sha256 = ? LIMIT 1", (sha256,)
            ).fetchone()
            if named is None:
                self._db.execute("DELETE FROM files WHERE sha256 = ?", (sha256,))
                (self.files_dir / sha256).unlink(missing_ok=True)

    # --- taking -------------------------------------------------------------------------

    def batch(self, max_bytes: int) -> list[dict[str, Any]]:
        """The oldest records, in order, as many as fit in ``max_bytes`` of JSON (at
        least one)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body, size FROM records ORDER BY seq LIMIT ?", (BATCH_RECORDS,)
            ).fetchall()
        batch, used = [], 0
        for body, size in rows:
            if batch and used + size + 1 > max_bytes:
                break
            batch.append(protocol.loads(body))
            used += size + 1
        return batch

    def files_to_upload(self, digests: Sequence[str]) -> list[QueuedFile]:
        """Of ``digests``, the queued files not yet known to be in the cloud."""
        if not digests:
            return []
        marks = ",".join("?" * len(digests))
        with self._lock:
            rows = self._db.execute(
                f"SELECT sha256, size, content_type FROM files "
                f"WHERE uploaded = 0 AND sha256 IN ({marks})",
                list(digests),
            ).fetchall()
        return [QueuedFile(sha, self.files_dir / sha, size, kind) for sha, size, kind in rows]

    def file(self, sha256: str) -> QueuedFile | None:
        with self._lock:
            row = self._db.execute(
                "SELECT size, content_type FROM files WHERE sha256 = ?", (sha256,)
            ).fetchone()
        return QueuedFile(sha256, self.files_dir / sha256, *row) if row else None

    def uploaded(self, sha256: str) -> None:
        """The cloud has the file: it is never sent again."""
        with self._lock, self._db:
            self._db.execute("UPDATE files SET uploaded = 1 WHERE sha256 = ?", (sha256,))

    def remove(self, record_ids: Sequence[str]) -> None:
        """The cloud answered for these records: they leave the queue."""
        if not record_ids:
            return
        marks = ",".join("?" * len(record_ids))
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            seqs = [
                row[0]
                for row in self._db.execute(
                    f"SELECT seq FROM records WHERE record_id IN ({marks})", list(record_ids)
                )
            ]
            if seqs:
                self._forget(seqs)

    def stats(self) -> QueueStats:
        with self._lock:
            (depth,) = self._db.execute("SELECT COUNT(*) FROM records").fetchone()
            size = self._size()
            row = self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        return QueueStats(depth, size, row[0] if row else 0)
