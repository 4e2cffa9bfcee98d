"""API keys: a SHA-256 digest found by a short prefix, with bindings like a user's."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.store.audit import AuditEntry, write_audit
from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.errors import ApiKeyNotFound
from edgefleet.controller.store.pages import page_of
from edgefleet.controller.store.roles import Binding, HeldRole, held_roles, replace_bindings
from edgefleet.controller.store.schema import api_key_roles, api_keys, users

PUBLIC_COLUMNS = [c for c in api_keys.c if c.name != "digest"]


async def _fetch_key(connection: AsyncConnection, key_id: int) -> dict[str, Any]:
    row = (
        (await connection.execute(select(*PUBLIC_COLUMNS).where(api_keys.c.key_id == key_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise ApiKeyNotFound(key_id)
    key = dict(row)
    key["bindings"] = (await held_roles(connection, api_key_roles, "key_id", [key_id]))[key_id]
    return key


class ApiKeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, values: dict[str, Any], bindings: Iterable[Binding], audit: AuditEntry | None = None
    ) -> dict[str, Any]:
        """``values``: ``key_id``, ``user_id``, ``name``, ``prefix``, ``digest``,
        ``created_by``, ``expires_at``."""
        async with self._db.begin() as connection:
            await connection.execute(insert(api_keys), {**values, "created_at": utcnow()})
            await replace_bindings(connection, api_key_roles, "key_id", values["key_id"], bindings)
            await write_audit(connection, audit)
            return await _fetch_key(connection, values["key_id"])

    async def get(self, key_id: int) -> dict[str, Any]:
        async with self._db.read() as connection:
            return await _fetch_key(connection, key_id)

    async def list(
        self, user_id: int | None, page: int, per_page: int
    ) -> tuple[list[dict[str, Any]], int]:
        """The keys of ``user_id`` (everyone's: None), newest first."""
        conditions = [api_keys.c.user_id == user_id] if user_id is not None else []
        newest_first = [api_keys.c.key_id.desc()]
        async with self._db.read() as connection:
            items, total = await page_of(
                connection, api_keys, conditions, newest_first, page, per_page, PUBLIC_COLUMNS
            )
            held = await held_roles(
                connection, api_key_roles, "key_id", [k["key_id"] for k in items]
            )
        return [{**key, "bindings": held[key["key_id"]]} for key in items], total

    async def by_prefix(
        self, prefix: str
    ) -> tuple[dict[str, Any], dict[str, Any], list[HeldRole]] | None:
        """For authentication: the key (with its digest), its owner, its bindings."""
        async with self._db.read() as connection:
            row = (
                (await connection.execute(select(api_keys).where(api_keys.c.prefix == prefix)))
                .mappings()
                .first()
            )
            if row is None:
                return None
            owner = (
                (await connection.execute(select(users.c.user_id, users.c.username,
                    users.c.is_active).where(users.c.user_id == row["user_id"])))
                .mappings()
                .one()
            )  # fmt: skip
            held = await held_roles(connection, api_key_roles, "key_id", [row["key_id"]])
            return dict(row), dict(owner), held[row["key_id"]]

    async def revoke(self, key_id: int, audit: AuditEntry | None = None) -> dict[str, Any]:
        async with self._db.begin() as connection:
            await _fetch_key(connection, key_id)
            await connection.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            await write_audit(connection, audit)
            return await _fetch_key(connection, key_id)

    async def used(self, key_id: int, at: datetime) -> None:
        async with self._db.begin() as connection:
            await connection.execute(
                update(api_keys).where(api_keys.c.key_id == key_id).values(last_used_at=at)
            )
