"""User accounts and their role bindings.

An *administrator* is an active user who is a superuser or holds the ``admin``
role everywhere. A change that would leave none (when there was one) is refused
inside its transaction. On MySQL the administrators' rows are locked while they
are counted, so two concurrent demotions cannot both pass; SQLite has one writer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.access.permissions import ADMIN_ROLE_ID
from edgefleet.controller.store.audit import AuditEntry, write_audit
from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.devices import like_pattern
from edgefleet.controller.store.errors import LastAdmin, UserConflict, UserNotFound
from edgefleet.controller.store.pages import page_of
from edgefleet.controller.store.roles import Binding, HeldRole, held_roles, replace_bindings
from edgefleet.controller.store.schema import refresh_tokens, user_roles, users

# The bcrypt hash never leaves the store through a read of the account.
PUBLIC_COLUMNS = [c for c in users.c if c.name != "password"]

_is_admin = (users.c.is_active.is_(True)) & or_(
    users.c.is_superuser.is_(True),
    exists().where(
        user_roles.c.user_id == users.c.user_id,
        user_roles.c.role_id == ADMIN_ROLE_ID,
        user_roles.c.group_id.is_(None),
    ),
)


async def _fetch_user(connection: AsyncConnection, user_id: int) -> dict[str, Any]:
    row = (
        (await connection.execute(select(*PUBLIC_COLUMNS).where(users.c.user_id == user_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise UserNotFound(user_id)
    user = dict(row)
    user["bindings"] = (await held_roles(connection, user_roles, "user_id", [user_id]))[user_id]
    return user


async def _count_admins(connection: AsyncConnection) -> int:
    if connection.dialect.name != "sqlite":
        # Serialise admin-changing transactions: each sees the other's result.
        await connection.execute(select(users.c.user_id).where(_is_admin).with_for_update())
    return await connection.scalar(select(func.count()).select_from(users).where(_is_admin)) or 0


class UserStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        values: dict[str, Any],
        bindings: Iterable[Binding] = (),
        audit: AuditEntry | None = None,
    ) -> dict[str, Any]:
        """``values`` holds ``user_id``, ``username`` and ``password`` (a bcrypt hash
        or None); unknown roles or groups in ``bindings`` raise."""
        now = utcnow()
        row = {"is_active": True, "is_superuser": False, **values, "created_at": now,
               "updated_at": now}  # fmt: skip
        try:
            async with self._db.begin() as connection:
                await connection.execute(insert(users), row)
                await replace_bindings(connection, user_roles, "user_id", row["user_id"], bindings)
                await write_audit(connection, audit)
                return await _fetch_user(connection, row["user_id"])
        except IntegrityError as exc:
            raise UserConflict(f"a user named {values['username']!r} already exists") from exc

    async def get(self, user_id: int) -> dict[str, Any]:
        async with self._db.read() as connection:
            return await _fetch_user(connection, user_id)

    async def sign_in_view(self, username: str) -> dict[str, Any] | None:
        """The account with its password hash, for checking a sign-in."""
        async with self._db.read() as connection:
            row = (
                (await connection.execute(select(users).where(users.c.username == username)))
                .mappings()
                .first()
            )
            return dict(row) if row else None

    async def password_of(self, user_id: int) -> str | None:
        async with self._db.read() as connection:
            found = (
                await connection.execute(select(users.c.password).where(users.c.user_id == user_id))
            ).first()
        if found is None:
            raise UserNotFound(user_id)
        return found[0]

    async def principals(
        self, user_ids: list[int]
    ) -> dict[int, tuple[dict[str, Any], list[HeldRole]]]:
        """Accounts with their bindings, for authenticating requests."""
        async with self._db.read() as connection:
            rows = await connection.execute(
                select(*PUBLIC_COLUMNS).where(users.c.user_id.in_(user_ids))
            )
            found = {row["user_id"]: dict(row) for row in rows.mappings()}
            held = await held_roles(connection, user_roles, "user_id", list(found))
        return {user_id: (row, held[user_id]) for user_id, row in found.items()}

    async def list(
        self, text: str | None, page: int, per_page: int
    ) -> tuple[list[dict[str, Any]], int]:
        conditions = []
        if text:
            conditions.append(users.c.username.like(like_pattern(text), escape="\\"))
        async with self._db.read() as connection:
            items, total = await page_of(
                connection, users, conditions, [users.c.username], page, per_page, PUBLIC_COLUMNS
            )
            held = await held_roles(
                connection, user_roles, "user_id", [u["user_id"] for u in items]
            )
        return [{**user, "bindings": held[user["user_id"]]} for user in items], total

    async def update(
        self,
        user_id: int,
        changes: dict[str, Any],
        bindings: Iterable[Binding] | None = None,
        audit: AuditEntry | None = None,
    ) -> dict[str, Any]:
        """Apply ``changes`` (``password`` is a hash) and, given, replace the
        bindings. A new password or a deactivation ends every refresh token."""
        async with self._db.begin() as connection:
            admins = await _count_admins(connection)
            await _fetch_user(connection, user_id)
            if changes:
                await connection.execute(
                    update(users).where(users.c.user_id == user_id).values(
                        **changes, updated_at=utcnow())
                )  # fmt: skip
            if bindings is not None:
                await replace_bindings(connection, user_roles, "user_id", user_id, bindings)
            if admins and not await _count_admins(connection):
                raise LastAdmin("this would leave no active administrator")
            if "password" in changes or changes.get("is_active") is False:
                await connection.execute(
                    update(refresh_tokens)
                    .where(
                        refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None)
                    )
                    .values(revoked_at=utcnow())
                )
            await write_audit(connection, audit)
            return await _fetch_user(connection, user_id)

    async def delete(self, user_id: int, audit: AuditEntry | None = None) -> None:
        async with self._db.begin() as connection:
            admins = await _count_admins(connection)
            await _fetch_user(connection, user_id)
            await connection.execute(delete(users).where(users.c.user_id == user_id))
            if admins and not await _count_admins(connection):
                raise LastAdmin("this would leave no active administrator")
            await write_audit(connection, audit)

    async def signed_in(self, user_id: int) -> None:
        async with self._db.begin() as connection:
            await connection.execute(
                update(users).where(users.c.user_id == user_id).values(last_login_at=utcnow())
            )

    async def count(self) -> int:
        async with self._db.read() as connection:
            return await connection.scalar(select(func.count()).select_from(users)) or 0
