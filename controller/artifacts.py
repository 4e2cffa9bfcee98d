"""Uploading and deleting software artifacts (FLEET.md "Software updates").

An upload streams the body into the file store, hashing and counting it on the
way (never held whole in memory, refused past ``--max-artifact-bytes``); only
then is the artifact written, with its audit entry in the same transaction. A
deletion removes the artifact and, when nothing else names its file (no record
of a device, no other artifact), the file too: its index row first, its bytes
after, as retention does, so no device is told the cloud has a file it is
deleting. Both need ``artifacts:write`` everywhere: an artifact belongs to the
installation, not to a group.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable
from typing import Any

from edgefleet.controller.access.principal import Caller
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.store import Store
from edgefleet.controller.store.blobs import FileStore
from edgefleet.controller.writes import Auditor

log = logging.getLogger("edgefleet.artifacts")

PERMISSION = "artifacts:write"


class ArtifactWrites:
    def __init__(
        self,
        store: Store,
        files: FileStore,
        ids: SnowflakeGenerator,
        auditor: Auditor,
        max_bytes: int,
    ) -> None:
        self._store = store
        self._files = files
        self._ids = ids
        self._audit = auditor
        self.max_bytes = max_bytes

    async def upload(
        self,
        caller: Caller,
        name: str,
        version: str,
        types: list[str],
        content_type: str,
        chunks: AsyncIterable[bytes],
    ) -> dict[str, Any]:
        """Store the bytes and add the artifact; raises ``blobs.FileTooLarge`` and
        ``ArtifactConflict`` (the same name and version exist)."""
        artifact_id = self._ids.next_id()
        fields = ["name", "version", *(["types"] if types else [])]
        async with self._audit.change(
            caller, "upload_artifact", "artifact", artifact_id, fields
        ) as entry:
            caller.principal.everywhere(PERMISSION)
            sha256, size = await self._files.add(chunks, content_type, self.max_bytes)
            values = {
                "artifact_id": artifact_id,
                "name": name,
                "version": version,
                "types": types,
                "sha256": sha256,
                "size": size,
                "content_type": content_type[:255],
            }
            return await self._store.artifacts.create(values, entry)

    async def delete(self, caller: Caller, artifact_id: int) -> None:
        async with self._audit.change(caller, "delete_artifact", "artifact", artifact_id) as entry:
            caller.principal.everywhere(PERMISSION)
            unused = await self._store.artifacts.delete(artifact_id, entry)
        # A device may have uploaded the same bytes since: then its row is back.
        if unused is not None and await self._store.records.file(unused) is None:
            await self._files.delete(unused)
            log.info("artifact file deleted", extra={"sha256": unused})
