"""Software artifacts (FLEET.md "Software updates"): packages devices download and
install with the ``update`` command (protocol section 9).

An artifact is a row naming a file of the content-addressed store by its digest,
with a name, a version and the device types it is for. Its bytes are stored (and
checked) before the row is written, and the file is indexed in ``files`` in the
same transaction as the artifact, so a device is never sent an artifact whose
bytes the cloud lacks. The same bytes may be a device's upload too: deleting the
artifact then leaves the file alone, and so does retention while any artifact
names it (``records.unnamed``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from edgefleet.controller.store.audit import AuditEntry, write_audit
from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.errors import Conflict, NotFound
from edgefleet.controller.store.pages import page_of
from edgefleet.controller.store.records import index_file, unnamed
from edgefleet.controller.store.schema import artifacts, files


class ArtifactNotFound(NotFound):
    pass


class ArtifactConflict(Conflict):
    pass


class ArtifactStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, values: dict[str, Any], audit: AuditEntry | None = None
    ) -> dict[str, Any]:
        """Index the artifact's file (its bytes already in the store) and add the
        artifact; ``ArtifactConflict`` when its name and version exist."""
        row = {**values, "created_at": utcnow()}
        try:
            async with self._db.begin() as connection:
                await index_file(connection, row["sha256"], row["size"], row["content_type"])
                await connection.execute(insert(artifacts), row)
                await write_audit(connection, audit)
        except IntegrityError as exc:
            raise ArtifactConflict(
                f"artifact {values['name']!r} version {values['version']!r} already exists"
            ) from exc
        return row

    async def list(
        self, name: str | None, page: int, per_page: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Newest first (ids are snowflakes), optionally one name's versions."""
        conditions = [artifacts.c.name == name] if name else []
        async with self._db.read() as connection:
            return await page_of(
                connection, artifacts, conditions, [artifacts.c.artifact_id.desc()], page, per_page
            )

    async def get(self, artifact_id: int) -> dict[str, Any]:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    select(artifacts).where(artifacts.c.artifact_id == artifact_id)
                )
            ).first()
        if row is None:
            raise ArtifactNotFound(artifact_id)
        return dict(row._mapping)

    async def delete(self, artifact_id: int, audit: AuditEntry | None = None) -> str | None:
        """Delete the artifact; returns its file's digest when nothing names that file
        any more (its index row is gone then, and the caller removes the bytes), else
        None: a record or another artifact still needs it."""
        async with self._db.begin() as connection:
            sha256 = await connection.scalar(
                select(artifacts.c.sha256).where(artifacts.c.artifact_id == artifact_id)
            )
            if sha256 is None:
                raise ArtifactNotFound(artifact_id)
            await connection.execute(
                delete(artifacts).where(artifacts.c.artifact_id == artifact_id)
            )
            await write_audit(connection, audit)
            forgotten = await connection.execute(
                delete(files).where(
                    files.c.sha256 == sha256, files.c.refs <= 0, unnamed(files.c.sha256)
                )
            )
        return sha256 if forgotten.rowcount else None

    async def downloadable(self, sha256: str) -> dict[str, Any] | None:
        """The file's index row if an artifact names it: what a device may download
        (never another device's upload)."""
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    select(files).where(
                        files.c.sha256 == sha256,
                        select(artifacts.c.artifact_id)
                        .where(artifacts.c.sha256 == sha256)
                        .exists(),
                    )
                )
            ).first()
        return dict(row._mapping) if row else None
