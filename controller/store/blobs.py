"""The file store: where the bytes of devices' files live, by SHA-256 digest.

One interface, two implementations: ``LocalFileStore``, a folder (the default),
and ``S3FileStore`` (``s3.py``), an S3-compatible object store (Alibaba OSS,
MinIO, AWS S3). Which one runs is a setting (``open_file_store``).

An upload is never held whole in memory and never visible before its bytes are
known to be right: ``spool`` writes the incoming chunks to a temporary file while
hashing and counting them, refuses the upload (``FileTooLarge``) as soon as it
passes the limit and (``DigestMismatch``) when the digest is not the one named;
only then does the store move the file into place (a rename in the folder, an
upload from the temporary file to the object store). The ``files`` table
(``records.py``) indexes a file only after that, so "the cloud has it" is true
of every indexed digest.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from edgefleet.controller.settings import DataSettings

READ_CHUNK = 256 * 1024
WRITE_BATCH = 1024 * 1024
"""Bytes gathered before one write to the temporary file (in a worker thread)."""


class FileTooLarge(Exception):
    """The upload passed the size limit; nothing was kept."""


class DigestMismatch(Exception):
    """The bytes do not hash to the digest they were sent under; nothing was kept."""


class BlobMissing(Exception):
    """The store has no file under this digest."""


class RangeNotSatisfiable(Exception):
    """A ``Range`` header this server does not serve (more than one range) or that
    lies outside the file; ``str(exc)`` says which."""


RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str, size: int) -> tuple[int, int]:
    """The one range (first, last byte) a ``Range: bytes=…`` header asks for within
    ``size`` bytes (RFC 9110 section 14.1.2: ``a-b``, ``a-``, or the last ``-n``);
    raises ``RangeNotSatisfiable``."""
    match = RANGE.match(header.strip())
    if match is None or match[1] == match[2] == "":
        raise RangeNotSatisfiable("only one byte range is served: bytes=a-b")
    if match[1] == "":  # the last n bytes
        start, end = max(0, size - int(match[2])), size - 1
    else:
        start = int(match[1])
        end = min(int(match[2]), size - 1) if match[2] else size - 1
    if start > end or start >= size:
        raise RangeNotSatisfiable(f"range not satisfiable: the file has {size} bytes")
    return start, end


class FileStore(Protocol):
    async def put(
        self, sha256: str, chunks: AsyncIterable[bytes], content_type: str, max_bytes: int
    ) -> int:
        """Store the bytes if they hash to ``sha256``; returns their size. Raises
        ``FileTooLarge`` or ``DigestMismatch`` (and keeps nothing)."""

    async def add(
        self, chunks: AsyncIterable[bytes], content_type: str, max_bytes: int
    ) -> tuple[str, int]:
        """Store bytes whose digest is not known in advance (an artifact uploaded by
        an operator): hashed while they stream; returns (sha256, size). Raises
        ``FileTooLarge`` (and keeps nothing)."""

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes from ``start`` up to and including ``end`` (None: the last)."""

    async def delete(self, sha256: str) -> None: ...

    async def close(self) -> None: ...


async def spool(
    chunks: AsyncIterable[bytes], sha256: str | None, max_bytes: int, directory: Path
) -> tuple[Path, int, str]:
    """Write ``chunks`` to a new temporary file in ``directory``, checking size and
    digest (``sha256`` None: any digest); returns (path, size, digest). On any
    failure the temporary file is removed."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    path = directory / f".incoming-{uuid.uuid4().hex}"
    out = await asyncio.to_thread(path.open, "wb")
    digest, size, pending = hashlib.sha256(), 0, bytearray()
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise FileTooLarge(size)
            digest.update(chunk)
            pending += chunk
            if len(pending) >= WRITE_BATCH:
                await asyncio.to_thread(out.write, bytes(pending))
                pending.clear()
        if pending:
            await asyncio.to_thread(out.write, bytes(pending))
        await asyncio.to_thread(_sync_and_close, out)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise DigestMismatch(digest.hexdigest())
    except BaseException:
        await asyncio.to_thread(out.close)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    return path, size, digest.hexdigest()


def _sync_and_close(out: object) -> None:
    out.flush()  # type: ignore[attr-defined]
    os.fsync(out.fileno())  # type: ignore[attr-defined]
    out.close()  # type: ignore[attr-defined]


class LocalFileStore:
    """Files in a folder, at ``<root>/<ab>/<cd>/<digest>`` (two levels of shards, so
    no folder holds more than a few thousand entries at 10 million files)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def put(
        self, sha256: str, chunks: AsyncIterable[bytes], content_type: str, max_bytes: int
    ) -> int:
        # The temporary file is in the root, on the same filesystem as its final
        # place, so moving it there is one atomic rename.
        temporary, size, _ = await spool(chunks, sha256, max_bytes, self.root)
        await self._place(temporary, sha256)
        return size

    async def add(
        self, chunks: AsyncIterable[bytes], content_type: str, max_bytes: int
    ) -> tuple[str, int]:
        temporary, size, sha256 = await spool(chunks, None, max_bytes, self.root)
        await self._place(temporary, sha256)
        return sha256, size

    async def _place(self, temporary: Path, sha256: str) -> None:
        final = self.path(sha256)

        def move() -> None:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, final)

        try:
            await asyncio.to_thread(move)
        finally:
            await asyncio.to_thread(temporary.unlink, missing_ok=True)

    async def read(
        self, sha256: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        try:
            handle = await asyncio.to_thread(self.path(sha256).open, "rb")
        except FileNotFoundError as exc:
            raise BlobMissing(sha256) from exc
        try:
            await asyncio.to_thread(handle.seek, start)
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                size = READ_CHUNK if left is None else min(READ_CHUNK, left)
                chunk = await asyncio.to_thread(handle.read, size)
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def delete(self, sha256: str) -> None:
        await asyncio.to_thread(self.path(sha256).unlink, missing_ok=True)

    async def close(self) -> None:
        pass


def open_file_store(settings: DataSettings) -> FileStore:
    """The store the settings name: the object store for ``--files-url s3://…``,
    else the folder ``--files-dir``."""
    if settings.files_url:
        from edgefleet.controller.store.s3 import S3FileStore  # aiobotocore: only when used

        return S3FileStore.from_settings(settings)
    return LocalFileStore(settings.files_dir)


def spool_directory() -> Path:
    """Where uploads bound for an object store are checked before they go there."""
    return Path(tempfile.gettempdir()) / "edgefleet-uploads"
