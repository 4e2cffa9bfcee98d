"""The analysis queue, the cache of classifications by image digest, and the log of
the classify API's requests.

The queue is the database: a record of an analysed kind waits in status
``received`` until the worker marks it ``analysed`` or ``failed``; its attempts,
the time of the next one and the last error are in ``analysis_jobs``. Nothing of
the queue lives only in a process, so a restart resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.schema import (
    analysis_jobs,
    classifications,
    classify_requests,
    files,
    record_files,
    records,
)


def _waiting(kinds: Sequence[str]) -> list[Any]:
    return [records.c.status == "received", records.c.kind.in_(list(kinds))]


class AnalysisStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def due(self, kinds: Sequence[str], limit: int, now: datetime) -> list[int]:
        """Records waiting for analysis whose next attempt is due, oldest first."""
        if not kinds:
            return []
        async with self._db.read() as connection:
            result = await connection.execute(
                select(records.c.id)
                .select_from(
                    records.outerjoin(analysis_jobs, analysis_jobs.c.record_id == records.c.id)
                )
                .where(
                    *_waiting(kinds),
                    or_(analysis_jobs.c.next_at.is_(None), analysis_jobs.c.next_at <= now),
                )
                .order_by(records.c.id)
                .limit(limit)
            )
            return list(result.scalars())

    async def backlog(self, kinds: Sequence[str]) -> int:
        if not kinds:
            return 0
        async with self._db.read() as connection:
            return await connection.scalar(select(func.count()).where(*_waiting(kinds))) or 0

    async def files_of(self, record_id: int) -> list[dict[str, Any]]:
        """The record's files in order: digest, and size and content type when the
        cloud has the file (None while it has not arrived)."""
        async with self._db.read() as connection:
            result = await connection.execute(
                select(record_files.c.sha256, files.c.size, files.c.content_type)
                .select_from(record_files.outerjoin(files, files.c.sha256 == record_files.c.sha256))
                .where(record_files.c.record_id == record_id)
                .order_by(record_files.c.position)
            )
            return [dict(row) for row in result.mappings()]

    async def cached(self, sha256: str) -> dict[str, Any] | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    select(classifications).where(classifications.c.sha256 == sha256)
                )
            ).first()
        return dict(row._mapping) if row else None

    async def remember(self, sha256: str, category: str, confidence: float, model: str) -> dict:
        """Cache a successful classification (the first one wins)."""
        row = {
            "sha256": sha256,
            "category": category,
            "confidence": confidence,
            "model": model,
            "analysed_at": utcnow(),
        }
        async with self._db.begin() as connection:
            if await self._has(connection, sha256):
                return await self._get(connection, sha256)
            await connection.execute(insert(classifications), row)
        return row

    @staticmethod
    async def _has(connection: AsyncConnection, sha256: str) -> bool:
        found = await connection.scalar(
            select(classifications.c.sha256).where(classifications.c.sha256 == sha256)
        )
        return found is not None

    @staticmethod
    async def _get(connection: AsyncConnection, sha256: str) -> dict[str, Any]:
        row = (
            await connection.execute(
                select(classifications).where(classifications.c.sha256 == sha256)
            )
        ).one()
        return dict(row._mapping)

    async def finish(self, record_id: int, status: str, error: str = "") -> None:
        """The record is ``analysed`` or ``failed``; a failure keeps its last error."""
        async with self._db.begin() as connection:
            await connection.execute(
                update(records).where(records.c.id == record_id).values(status=status)
            )
            if status == "analysed":
                await connection.execute(
                    delete(analysis_jobs).where(analysis_jobs.c.record_id == record_id)
                )
            else:
                await self._set_job(connection, record_id, error=error)

    async def retry_later(self, record_id: int, base_delay: float, error: str) -> int:
        """Count a failed attempt and put the next one ``base_delay * 2**(attempts-1)``
        seconds away; returns the attempts made so far."""
        async with self._db.begin() as connection:
            attempts = await connection.scalar(
                select(analysis_jobs.c.attempts).where(analysis_jobs.c.record_id == record_id)
            )
            attempts = (attempts or 0) + 1
            await self._set_job(
                connection,
                record_id,
                attempts=attempts,
                next_at=utcnow() + timedelta(seconds=base_delay * 2 ** min(attempts - 1, 16)),
                error=error,
            )
        return attempts

    @staticmethod
    async def _set_job(connection: AsyncConnection, record_id: int, **values: Any) -> None:
        values = {"updated_at": utcnow(), **values}
        if "error" in values:
            values["error"] = values["error"][:512]
        changed = await connection.execute(
            update(analysis_jobs).where(analysis_jobs.c.record_id == record_id).values(**values)
        )
        if changed.rowcount == 0:
            await connection.execute(
                insert(analysis_jobs).values(
                    record_id=record_id,
                    **{"attempts": 0, "next_at": utcnow(), "error": "", **values},
                )
            )

    # --- the classify API's log ------------------------------------------------------------

    async def log_request(self, caller: str, sha256: str, cached: bool, category: str) -> None:
        async with self._db.begin() as connection:
            await connection.execute(
                insert(classify_requests).values(
                    at=utcnow(),
                    caller=caller[:128],
                    sha256=sha256,
                    cached=cached,
                    category=category,
                )
            )

    async def request_stats(self, day: date) -> dict[str, Any]:
        start = datetime(day.year, day.month, day.day)
        window = [classify_requests.c.at >= start, classify_requests.c.at < start + timedelta(1)]
        async with self._db.read() as connection:
            requests, hits, callers = (
                await connection.execute(
                    select(
                        func.count(),
                        func.coalesce(func.sum(case((classify_requests.c.cached, 1), else_=0)), 0),
                        func.count(func.distinct(classify_requests.c.caller)),
                    ).where(*window)
                )
            ).one()
            by_category = await connection.execute(
                select(classify_requests.c.category, func.count())
                .where(*window)
                .group_by(classify_requests.c.category)
            )
            categories = dict(by_category.all())
        hits = int(hits)
        return {
            "day": day.isoformat(),
            "requests": requests,
            "cache_hits": hits,
            "hit_rate": hits / requests if requests else 0.0,
            "callers": callers,
            "categories": categories,
            "model_calls_saved": hits,
        }
