"""Refresh tokens: stored as digests, rotated on use, a family revoked on reuse.

Each sign-in starts a *family*; each refresh marks the token used and issues its
successor in the same family. A used or revoked token presented again means two
parties hold the family (a copy was stolen): the whole family is revoked, so the
thief and the user both sign in again, and only the user can.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.store.audit import AuditEntry, write_audit
from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.schema import refresh_tokens


@dataclass(frozen=True)
class Rotation:
    outcome: Literal["rotated", "reused", "invalid"]
    """``invalid``: unknown or expired; ``reused``: the family is now revoked."""
    user_id: int | None = None
    family: str | None = None


async def _revoke_family(connection: AsyncConnection, family: str) -> None:
    await connection.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.family == family, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


class RefreshTokenStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def issue(
        self,
        user_id: int,
        family: str,
        digest: str,
        expires_at: datetime,
        audit: AuditEntry | None = None,
    ) -> None:
        async with self._db.begin() as connection:
            await connection.execute(
                insert(refresh_tokens),
                {"user_id": user_id, "family": family, "digest": digest, "issued_at": utcnow(),
                 "expires_at": expires_at},
            )  # fmt: skip
            await write_audit(connection, audit)

    async def rotate(self, digest: str, successor: str, expires_at: datetime) -> Rotation:
        """Spend the token ``digest`` for ``successor`` in the same family."""
        now = utcnow()
        async with self._db.begin() as connection:
            query = select(refresh_tokens).where(refresh_tokens.c.digest == digest)
            if connection.dialect.name != "sqlite":
                query = query.with_for_update()
            row = (await connection.execute(query)).mappings().first()
            if row is None:
                return Rotation("invalid")
            if row["used_at"] is not None or row["revoked_at"] is not None:
                await _revoke_family(connection, row["family"])
                return Rotation("reused", row["user_id"], row["family"])
            if row["expires_at"] <= now:
                return Rotation("invalid", row["user_id"], row["family"])
            await connection.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.token_id == row["token_id"])
                .values(used_at=now)
            )
            await connection.execute(
                insert(refresh_tokens),
                {"user_id": row["user_id"], "family": row["family"], "digest": successor,
                 "issued_at": now, "expires_at": expires_at},
            )  # fmt: skip
            return Rotation("rotated", row["user_id"], row["family"])

    async def revoke(self, digest: str, audit: AuditEntry | None = None) -> int | None:
        """Revoke the token's family (sign-out); returns its user, None if unknown."""
        async with self._db.begin() as connection:
            row = (
                await connection.execute(
                    select(refresh_tokens.c.user_id, refresh_tokens.c.family).where(
                        refresh_tokens.c.digest == digest
                    )
                )
            ).first()
            if row is None:
                return None
            await _revoke_family(connection, row.family)
            await write_audit(connection, audit)
            return row.user_id
