"""The audit log: who changed what, and every command, append-only.

An entry for a change that reaches the database is written in the change's own
transaction (``write_audit``), so the log and the data never disagree; a refused
change is written on its own (``AuditStore.append``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.pages import page_of
from edgefleet.controller.store.schema import audit_log


@dataclass(frozen=True)
class AuditEntry:
    actor_type: str
    """``user``, ``api_key``, ``bootstrap`` or ``anonymous`` (a failed sign-in)."""
    actor_id: int | None
    actor_name: str
    action: str
    """The operation's id in the OpenAPI document: ``update_device``, ``login``…"""
    target_type: str
    target_id: str | None
    source_address: str
    request_id: str
    http_status: int
    result: str = "success"
    error_type: str | None = None
    fields: tuple[str, ...] = ()
    """Names of the fields changed, never their values."""
    at: datetime = field(default_factory=utcnow)

    def failed(self, error_type: str, http_status: int) -> AuditEntry:
        return replace(self, result="failure", error_type=error_type, http_status=http_status)

    def row(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "actor_type": self.actor_type,
            "actor_id": self.actor_id,
            "actor_name": self.actor_name[:128],
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "result": self.result,
            "error_type": self.error_type,
            "http_status": self.http_status,
            "source_address": self.source_address[:64],
            "request_id": self.request_id,
            "fields": sorted(self.fields),
        }


async def write_audit(connection: AsyncConnection, entry: AuditEntry | None) -> None:
    """Append ``entry`` inside the caller's transaction (nothing when None)."""
    if entry is not None:
        await connection.execute(insert(audit_log), entry.row())


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    """A target id, or ``type:id`` (``device:1790…``), or a type with ``type:``."""
    since: datetime | None = None
    until: datetime | None = None


class AuditStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, entry: AuditEntry) -> None:
        async with self._db.begin() as connection:
            await write_audit(connection, entry)

    async def list(
        self, where: AuditFilter, page: int, per_page: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Newest first."""
        conditions = []
        if where.actor is not None:
            conditions.append(audit_log.c.actor_name == where.actor)
        if where.action is not None:
            conditions.append(audit_log.c.action == where.action)
        if where.target is not None:
            kind, colon, target_id = where.target.rpartition(":")
            if colon:
                conditions.append(audit_log.c.target_type == kind)
            if target_id:
                conditions.append(audit_log.c.target_id == target_id)
        if where.since is not None:
            conditions.append(audit_log.c.at >= where.since)
        if where.until is not None:
            conditions.append(audit_log.c.at < where.until)
        async with self._db.read() as connection:
            return await page_of(
                connection, audit_log, conditions, [audit_log.c.audit_id.desc()], page, per_page
            )
