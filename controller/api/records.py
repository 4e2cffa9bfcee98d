"""Records from devices, their statistics, and the ingest log (DATA.md).

Kept in their own module, apart from the fleet's routes, so that access rules
for data (``records:read``) attach to these routes alone.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from edgefleet.controller.api.context import context, scope
from edgefleet.controller.api.endpoints import API_PREFIX, endpoints
from edgefleet.controller.api.schemas import (
    IngestAttempt,
    IngestLogQuery,
    Page,
    Record,
    RecordDetail,
    RecordListQuery,
    RecordPath,
    RecordStats,
    RecordStatsQuery,
)
from edgefleet.controller.store import LogFilter, RecordFilter

TAG = "data"
READ = "records:read"


@endpoints.get("/records", summary="Records from devices, newest first", tag=TAG, permission=READ)
async def list_records(request: web.Request, query: RecordListQuery) -> Page[Record]:
    where = RecordFilter(
        device_id=query.device_id,
        group_id=query.group_id,
        kind=query.kind,
        status=query.status,
        since=query.since,
        until=query.until,
        scope=scope(request),
    )
    rows, total = await context(request).store.records.list(where, query.page, query.per_page)
    return Page[Record].of(rows, total, query)


@endpoints.get(
    "/records/stats",
    summary="Counts by kind, status and day; bytes; devices; what deduplication saved",
    tag=TAG,
    permission=READ,
)
async def record_stats(request: web.Request, query: RecordStatsQuery) -> RecordStats:
    stats = await context(request).store.records.stats(
        query.since, query.until, query.group_id, scope(request)
    )
    return RecordStats(**stats)


@endpoints.get(
    "/records/{id}",
    summary="One record, with its files' URLs and their analysis",
    tag=TAG,
    errors=(404,),
    permission=READ,
)
async def get_record(request: web.Request, path: RecordPath) -> RecordDetail:
    row = await context(request).store.records.get(path.id, scope(request))
    job = row.pop("job")
    row["files"] = [_file(link) for link in row["files"]]
    row["analysis"] = (
        None
        if job is None
        else {
            "attempts": job["attempts"],
            "next_attempt_at": job["next_at"] if row["status"] == "received" else None,
            "last_error": job["error"],
        }
    )
    return RecordDetail(**row)


def _file(link: dict[str, Any]) -> dict[str, Any]:
    classified = link["category"] is not None
    return {
        "sha256": link["sha256"],
        "present": link["size"] is not None,
        "size": link["size"],
        "content_type": link["content_type"],
        "url": f"{API_PREFIX}/files/{link['sha256']}",
        "classification": {
            "category": link["category"],
            "confidence": link["confidence"],
            "model": link["model"],
            "analysed_at": link["analysed_at"],
        }
        if classified
        else None,
    }


@endpoints.get(
    "/ingest-log",
    summary="Upload attempts, accepted or not, newest first",
    tag=TAG,
    permission=READ,
)
async def ingest_log(request: web.Request, query: IngestLogQuery) -> Page[IngestAttempt]:
    where = LogFilter(
        device_id=query.device_id,
        status=query.status,
        since=query.since,
        until=query.until,
        scope=scope(request),
    )
    rows, total = await context(request).store.records.log(where, query.page, query.per_page)
    return Page[IngestAttempt].of(rows, total, query)
