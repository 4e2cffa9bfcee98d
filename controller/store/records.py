"""Records from devices, the index of their content-addressed files, and the
ingest log (docs/protocol.md section 7, DATA.md).

A batch is stored in one transaction: one query finds which of its record ids
the device sent before (duplicates), one multi-row insert stores the rest, one
inserts their file links, one query finds which of the named files the cloud
lacks (``missing_files``), and one row goes into the ingest log. The unique key
(``device_id``, ``record_id``) makes a resent record a duplicate, never a copy;
a batch that races another with the same ids is retried once and then finds
them as duplicates.

Files: a row in ``files`` exists only once its bytes are in the file store and
matched their digest, so "the cloud has it" is one primary-key lookup. ``refs``
counts the records that name a file; garbage collection takes files at 0 refs
whose ``released_at`` (or creation) is older than the retention, and checks
again that no record names them, so a count that raced an upload never loses a
file that is still named. A file an artifact names (``artifacts.py``) is never
collected while the artifact exists.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.agent.protocol import Record
from edgefleet.controller.ids import WORKER_BITS, SnowflakeGenerator
from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.errors import NotFound
from edgefleet.controller.store.pages import page_of, window
from edgefleet.controller.store.schema import (
    analysis_jobs,
    artifacts,
    classifications,
    device_group_members,
    files,
    ingest_log,
    record_files,
    records,
)
from edgefleet.controller.store.scope import Scope, in_scope

CHUNK = 500
"""Ids per ``IN (…)`` list."""


class RecordNotFound(NotFound):
    pass


class FileNotFound(NotFound):
    pass


@dataclass(frozen=True)
class Attempt:
    """Who tried to upload, for the ingest log."""

    device_id: int | None
    source_ip: str
    user_agent: str
    transport: str
    """``ws`` or ``http``."""


@dataclass(frozen=True)
class Batch:
    """A device's batch of checked records, and how many of it were rejected."""

    device_id: int
    records: Sequence[Record]
    rejected: int
    attempt: Attempt


@dataclass(frozen=True)
class BatchOutcome:
    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    bytes: int = 0
    """Payload bytes of the accepted records."""


@dataclass(frozen=True)
class RecordFilter:
    device_id: int | None = None
    group_id: int | None = None
    kind: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    scope: Scope = None
    """Only records of devices the caller may see (group scope)."""


@dataclass(frozen=True)
class LogFilter:
    device_id: int | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    scope: Scope = None
    """Only attempts of devices the caller may see (refused ones name no device)."""


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _insert_ignoring_duplicates(connection: AsyncConnection, table: Any) -> Any:
    """``INSERT`` that skips rows whose unique key exists, in the dialect's words."""
    if connection.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    statement = mysql.insert(table)
    first_key = next(iter(table.primary_key.columns))
    return statement.on_duplicate_key_update({first_key.name: statement.inserted[first_key.name]})


def _hour(connection: AsyncConnection, column: Any) -> Any:
    """The UTC hour of a time, ``YYYY-MM-DDTHH``, in the dialect's words."""
    if connection.dialect.name == "sqlite":
        return func.strftime("%Y-%m-%dT%H", column)
    return func.date_format(column, "%Y-%m-%dT%H")


async def index_file(
    connection: AsyncConnection, sha256: str, size: int, content_type: str
) -> bool:
    """Index a file whose bytes are in the store, in the caller's transaction, its
    ``refs`` counting the records that already name it; False if it was there."""
    named = await connection.scalar(
        select(func.count()).select_from(record_files).where(record_files.c.sha256 == sha256)
    )
    result = await connection.execute(
        _insert_ignoring_duplicates(connection, files).values(
            sha256=sha256,
            size=size,
            content_type=content_type[:255],
            created_at=utcnow(),
            refs=named or 0,
        )
    )
    return result.rowcount == 1


def unnamed(digest: Any) -> ColumnElement[bool]:
    """No record and no artifact names the file ``digest``: the one rule for when
    its bytes may go (retention, an artifact's deletion)."""
    return and_(
        ~exists().where(record_files.c.sha256 == digest),
        ~exists().where(artifacts.c.sha256 == digest),
    )


def _log_row(attempt: Attempt, at: datetime, **counts: Any) -> dict[str, Any]:
    row = {
        "device_id": attempt.device_id,
        "at": at,
        "source_ip": attempt.source_ip[:64],
        "user_agent": attempt.user_agent[:255],
        "transport": attempt.transport,
        "accepted": 0,
        "duplicates": 0,
        "rejected": 0,
        "bytes": 0,
        "status": "success",
        "message": "",
    }
    row.update(counts)
    row["message"] = row["message"][:255]
    return row


class RecordStore:
    def __init__(self, db: Database, ids: SnowflakeGenerator | None = None) -> None:
        self._db = db
        # Records are inserted by every southbound replica; a random worker id keeps
        # two of them from minting the same id in the same millisecond (a clash
        # would fail one batch, which is retried).
        self._ids = ids or SnowflakeGenerator(random.randrange(1 << WORKER_BITS))

    # --- ingest -------------------------------------------------------------------------

    async def ingest(
        self, device_id: int, batch: Sequence[Record], rejected: int, attempt: Attempt
    ) -> BatchOutcome:
        """Store one batch; raises ``DatabaseUnavailable`` when nothing could be."""
        [outcome] = await self.ingest_many([Batch(device_id, batch, rejected, attempt)])
        return outcome

    async def ingest_many(self, batches: Sequence[Batch]) -> list[BatchOutcome]:
        """Store several batches (of any devices) in one transaction, each with its
        own outcome and ingest-log row: under load the southbound groups the
        batches that wait, so the round trips of a transaction are paid once for
        them all. Raises ``DatabaseUnavailable`` when nothing could be stored."""
        try:
            return await self._ingest(batches)
        except IntegrityError:
            # Another upload of the same ids won the race: now they are duplicates.
            return await self._ingest(batches)

    async def _ingest(self, batches: Sequence[Batch]) -> list[BatchOutcome]:
        now = utcnow()
        wanted = [{r.record_id: r for r in batch.records} for batch in batches]
        keys = sorted(
            {(b.device_id, i) for b, ids in zip(batches, wanted, strict=True) for i in ids}
        )
        async with self._db.begin() as connection:
            seen: set[tuple[int, str]] = set()
            for chunk in _chunks(keys):
                result = await connection.execute(
                    select(records.c.device_id, records.c.record_id).where(
                        tuple_(records.c.device_id, records.c.record_id).in_(chunk)
                    )
                )
                seen.update((device_id, record_id) for device_id, record_id in result)
            rows: list[dict[str, Any]] = []
            links: list[dict[str, Any]] = []
            fresh_of: list[list[dict[str, Any]]] = []
            for batch, by_id in zip(batches, wanted, strict=True):
                fresh = []
                for record in by_id.values():
                    key = (batch.device_id, record.record_id)
                    if key in seen:
                        continue
                    seen.add(key)  # the same id in a later batch of the group: a duplicate
                    server_id = self._ids.next_id()
                    fresh.append(
                        {
                            "id": server_id,
                            "device_id": batch.device_id,
                            "record_id": record.record_id,
                            "kind": record.kind,
                            "at": record.at,
                            "received_at": now,
                            "payload": record.payload,
                            "size": record.size,
                            "status": "received",
                        }
                    )
                    links += [
                        {"record_id": server_id, "sha256": sha, "position": position}
                        for position, sha in enumerate(record.files)
                    ]
                fresh_of.append(fresh)
                rows += fresh
            if rows:
                await connection.execute(insert(records), rows)
            if links:
                await connection.execute(insert(record_files), links)
            named = sorted({sha for by_id in wanted for r in by_id.values() for sha in r.files})
            present = await self._present(connection, named)
            await self._count_references(
                connection, Counter(link["sha256"] for link in links if link["sha256"] in present)
            )
            outcomes, log = [], []
            for batch, by_id, fresh in zip(batches, wanted, fresh_of, strict=True):
                accepted = {row["record_id"] for row in fresh}
                size = sum(row["size"] for row in fresh)
                digests = sorted({sha for r in by_id.values() for sha in r.files})
                outcomes.append(
                    BatchOutcome(
                        accepted=[i for i in by_id if i in accepted],
                        duplicates=[i for i in by_id if i not in accepted],
                        missing_files=[sha for sha in digests if sha not in present],
                        bytes=size,
                    )
                )
                log.append(
                    _log_row(
                        replace(batch.attempt, device_id=batch.device_id),
                        now,
                        accepted=len(fresh),
                        duplicates=len(by_id) - len(fresh),
                        rejected=batch.rejected,
                        bytes=size,
                    )
                )
            await connection.execute(insert(ingest_log), log)
        return outcomes

    @staticmethod
    async def _present(connection: AsyncConnection, digests: Sequence[str]) -> set[str]:
        present: set[str] = set()
        for chunk in _chunks(digests):
            result = await connection.execute(
                select(files.c.sha256).where(files.c.sha256.in_(chunk))
            )
            present.update(result.scalars())
        return present

    @staticmethod
    async def _count_references(connection: AsyncConnection, added: Counter[str]) -> None:
        """``refs += n`` for each file, one UPDATE per distinct ``n`` (nearly always 1)."""
        by_count: dict[int, list[str]] = {}
        for sha, count in added.items():
            by_count.setdefault(count, []).append(sha)
        for count, digests in by_count.items():
            for chunk in _chunks(sorted(digests)):
                await connection.execute(
                    update(files)
                    .where(files.c.sha256.in_(chunk))
                    .values(refs=files.c.refs + count, released_at=None)
                )

    async def log_attempt(self, attempt: Attempt, status: str, message: str, **counts: Any) -> None:
        """An upload attempt that stored nothing (refused, malformed, too big)."""
        async with self._db.begin() as connection:
            await connection.execute(
                insert(ingest_log),
                _log_row(attempt, utcnow(), status=status, message=message, **counts),
            )

    # --- files ------------------------------------------------------------------------------

    async def file(self, sha256: str, scope: Scope = None) -> dict[str, Any] | None:
        """The file's index row; with a ``scope``, only if a record of a device in it
        names the file (a file is shared by every device that sent it)."""
        conditions = [files.c.sha256 == sha256]
        if scope is not None:
            named_in_scope = (
                select(record_files.c.sha256)
                .join(records, records.c.id == record_files.c.record_id)
                .where(record_files.c.sha256 == sha256, in_scope(records.c.device_id, scope))
            )
            conditions.append(named_in_scope.exists())
        async with self._db.read() as connection:
            row = (await connection.execute(select(files).where(*conditions))).first()
        return dict(row._mapping) if row else None

    async def add_file(self, sha256: str, size: int, content_type: str) -> bool:
        """Index a file whose bytes are in the store; False if it was there already."""
        async with self._db.begin() as connection:
            return await index_file(connection, sha256, size, content_type)

    # --- reading --------------------------------------------------------------------------

    def _conditions(self, where: RecordFilter) -> list[Any]:
        conditions = []
        if where.device_id is not None:
            conditions.append(records.c.device_id == where.device_id)
        if where.group_id is not None:
            conditions.append(
                records.c.device_id.in_(
                    select(device_group_members.c.device_id).where(
                        device_group_members.c.group_id == where.group_id
                    )
                )
            )
        if where.kind is not None:
            conditions.append(records.c.kind == where.kind)
        if where.status is not None:
            conditions.append(records.c.status == where.status)
        if where.scope is not None:
            conditions.append(in_scope(records.c.device_id, where.scope))
        return conditions + window(records.c.received_at, where.since, where.until)

    async def list(
        self, where: RecordFilter, page: int, per_page: int
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of records, newest first, each with its file digests."""
        conditions = self._conditions(where)
        async with self._db.read() as connection:
            order = [records.c.id.desc()]
            items, total = await page_of(connection, records, conditions, order, page, per_page)
            digests = await self._digests(connection, [item["id"] for item in items])
        for item in items:
            item["files"] = digests.get(item["id"], [])
        return items, total

    @staticmethod
    async def _digests(connection: AsyncConnection, ids: Sequence[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for chunk in _chunks(ids):
            result = await connection.execute(
                select(record_files.c.record_id, record_files.c.sha256)
                .where(record_files.c.record_id.in_(chunk))
                .order_by(record_files.c.record_id, record_files.c.position)
            )
            for record_id, sha in result:
                found.setdefault(record_id, []).append(sha)
        return found

    async def get(self, record_id: int, scope: Scope = None) -> dict[str, Any]:
        """One record with its files (and whether the cloud has each), their cached
        classification, and its analysis attempts; one of a device outside ``scope``
        is not found."""
        conditions = [records.c.id == record_id]
        if scope is not None:
            conditions.append(in_scope(records.c.device_id, scope))
        async with self._db.read() as connection:
            row = (await connection.execute(select(records).where(*conditions))).first()
            if row is None:
                raise RecordNotFound(record_id)
            record = dict(row._mapping)
            linked = await connection.execute(
                select(
                    record_files.c.sha256,
                    files.c.size,
                    files.c.content_type,
                    classifications.c.category,
                    classifications.c.confidence,
                    classifications.c.model,
                    classifications.c.analysed_at,
                )
                .select_from(
                    record_files.outerjoin(
                        files, files.c.sha256 == record_files.c.sha256
                    ).outerjoin(classifications, classifications.c.sha256 == record_files.c.sha256)
                )
                .where(record_files.c.record_id == record_id)
                .order_by(record_files.c.position)
            )
            record["files"] = [dict(link) for link in linked.mappings()]
            job = (
                await connection.execute(
                    select(analysis_jobs).where(analysis_jobs.c.record_id == record_id)
                )
            ).first()
            record["job"] = dict(job._mapping) if job else None
        return record

    async def stats(
        self,
        since: datetime | None,
        until: datetime | None,
        group_id: int | None,
        scope: Scope = None,
    ) -> dict[str, Any]:
        where = RecordFilter(group_id=group_id, since=since, until=until, scope=scope)
        conditions = self._conditions(where)
        async with self._db.read() as connection:

            async def grouped(column: Any) -> dict[str, int]:
                result = await connection.execute(
                    select(column, func.count()).where(*conditions).group_by(column)
                )
                return {str(key): count for key, count in result}

            by_kind = await grouped(records.c.kind)
            by_status = await grouped(records.c.status)
            by_day = await grouped(func.date(records.c.received_at))
            by_hour = await grouped(_hour(connection, records.c.received_at))
            total, size, devices = (
                await connection.execute(
                    select(
                        func.count(),
                        func.coalesce(func.sum(records.c.size), 0),
                        func.count(func.distinct(records.c.device_id)),
                    ).where(*conditions)
                )
            ).one()
            # Bytes of every file link in range, against the bytes of the distinct files:
            # the difference crossed the network once, not once per record.
            linked = (
                select(record_files.c.sha256, files.c.size)
                .select_from(
                    record_files.join(records, records.c.id == record_files.c.record_id).join(
                        files, files.c.sha256 == record_files.c.sha256
                    )
                )
                .where(*conditions)
                .subquery()
            )
            link_bytes, file_bytes, file_count = (
                await connection.execute(
                    select(
                        func.coalesce(func.sum(linked.c.size), 0),
                        select(func.coalesce(func.sum(files.c.size), 0))
                        .where(files.c.sha256.in_(select(linked.c.sha256)))
                        .scalar_subquery(),
                        func.count(func.distinct(linked.c.sha256)),
                    )
                )
            ).one()
            log_conditions = window(ingest_log.c.at, since, until)
            if scope is not None:
                log_conditions.append(in_scope(ingest_log.c.device_id, scope))
            if group_id is not None:
                log_conditions.append(
                    ingest_log.c.device_id.in_(
                        select(device_group_members.c.device_id).where(
                            device_group_members.c.group_id == group_id
                        )
                    )
                )
            duplicates = await connection.scalar(
                select(func.coalesce(func.sum(ingest_log.c.duplicates), 0)).where(*log_conditions)
            )
        return {
            "records": total,
            "by_kind": by_kind,
            "by_status": by_status,
            "by_day": dict(sorted(by_day.items())),
            "by_hour": dict(sorted(by_hour.items())),
            "bytes": int(size),
            "file_bytes": int(file_bytes),
            "files": file_count,
            "devices": devices,
            "duplicates_avoided": int(duplicates or 0),
            "bytes_not_resent": int(link_bytes) - int(file_bytes),
        }

    async def log(self, where: LogFilter, page: int, per_page: int) -> tuple[list[dict], int]:
        conditions = []
        if where.device_id is not None:
            conditions.append(ingest_log.c.device_id == where.device_id)
        if where.status is not None:
            conditions.append(ingest_log.c.status == where.status)
        if where.scope is not None:
            conditions.append(in_scope(ingest_log.c.device_id, where.scope))
        conditions += window(ingest_log.c.at, where.since, where.until)
        order = [ingest_log.c.at.desc(), ingest_log.c.id.desc()]
        async with self._db.read() as connection:
            return await page_of(connection, ingest_log, conditions, order, page, per_page)

    # --- retention --------------------------------------------------------------------------

    async def expire_records(self, before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` records received before ``before`` (their file links
        and analysis go with them) and release their files; returns how many."""
        async with self._db.begin() as connection:
            ids = list(
                (
                    await connection.execute(
                        select(records.c.id)
                        .where(records.c.received_at < before)
                        .order_by(records.c.received_at)
                        .limit(limit)
                    )
                ).scalars()
            )
            if not ids:
                return 0
            released: Counter[str] = Counter()
            for chunk in _chunks(ids):
                result = await connection.execute(
                    select(record_files.c.sha256, func.count())
                    .where(record_files.c.record_id.in_(chunk))
                    .group_by(record_files.c.sha256)
                )
                released.update(dict(result.all()))
            await self._count_references(connection, Counter({s: -n for s, n in released.items()}))
            now = utcnow()
            for chunk in _chunks(sorted(released)):
                await connection.execute(
                    update(files)
                    .where(files.c.sha256.in_(chunk), files.c.refs <= 0)
                    .values(refs=0, released_at=now)
                )
            for chunk in _chunks(ids):
                await connection.execute(
                    delete(record_files).where(record_files.c.record_id.in_(chunk))
                )
                await connection.execute(
                    delete(analysis_jobs).where(analysis_jobs.c.record_id.in_(chunk))
                )
                await connection.execute(delete(records).where(records.c.id.in_(chunk)))
            await connection.execute(delete(ingest_log).where(ingest_log.c.at < before))
        return len(ids)

    async def unreferenced_files(self, before: datetime, limit: int = 1000) -> list[str]:
        """Digests of files no record names, released before ``before``."""
        async with self._db.read() as connection:
            result = await connection.execute(
                select(files.c.sha256)
                .where(
                    files.c.refs <= 0,
                    case(
                        (files.c.released_at.is_(None), files.c.created_at),
                        else_=files.c.released_at,
                    )
                    < before,
                    unnamed(files.c.sha256),
                )
                .limit(limit)
            )
            return list(result.scalars())

    async def forget_files(self, digests: Sequence[str]) -> None:
        """Drop the index rows of deleted files (those still unreferenced)."""
        async with self._db.begin() as connection:
            for chunk in _chunks(sorted(digests)):
                await connection.execute(
                    delete(files).where(
                        and_(
                            files.c.sha256.in_(chunk),
                            files.c.refs <= 0,
                            unnamed(files.c.sha256),
                        )
                    )
                )
