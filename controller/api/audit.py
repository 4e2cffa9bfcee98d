"""The audit log, newest first. Nothing in the API writes to it but the changes."""

from __future__ import annotations

from aiohttp import web

from edgefleet.controller.api.context import context
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.schemas import AuditListQuery, AuditRecord, Page
from edgefleet.controller.store import AuditFilter


@endpoints.get(
    "/audit",
    summary="Who changed what, and every command: the audit log, newest first",
    tag="audit",
    permission="audit:read",
)
async def list_audit(request: web.Request, query: AuditListQuery) -> Page[AuditRecord]:
    where = AuditFilter(
        actor=query.actor,
        action=query.action,
        target=query.target,
        since=query.since,
        until=query.until,
    )
    # A command's entry is committed with its result, just after its answer.
    await context(request).commands.settled()
    rows, total = await context(request).store.audit.list(where, query.page, query.per_page)
    return Page[AuditRecord].of(rows, total, query)
