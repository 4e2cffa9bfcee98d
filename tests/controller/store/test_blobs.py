"""The file store, both implementations: a folder, and an S3-compatible object
store (moto's S3 server on loopback, through the real aiobotocore client)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgefleet.controller.store.blobs import (
    BlobMissing,
    DigestMismatch,
    FileStore,
    FileTooLarge,
    LocalFileStore,
)
from tests.conftest import s3_store

DATA = bytes(range(256)) * 4096  # 1 MiB
DIGEST = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(params=["folder", "s3"])
async def files(request, tmp_path: Path, moto_url: str) -> AsyncIterator[FileStore]:
    if request.param == "folder":
        store: FileStore = LocalFileStore(tmp_path / "files")
    else:
        store = await s3_store(moto_url, f"bucket-{tmp_path.name.lower()[-20:].strip('-_')}")
    try:
        yield store
    finally:
        await store.close()


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(store: FileStore, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(DIGEST, start, end)])


async def test_a_file_is_stored_under_its_digest_and_read_back_in_ranges(files: FileStore) -> None:
    assert await files.put(DIGEST, chunks(DATA), "image/jpeg", 2 * len(DATA)) == len(DATA)
    assert await read_all(files) == DATA
    assert await read_all(files, 1000, 1999) == DATA[1000:2000]
    assert await read_all(files, len(DATA) - 10) == DATA[-10:]
    await files.delete(DIGEST)
    with pytest.raises(BlobMissing):
        await read_all(files)


async def test_wrong_bytes_or_too_many_never_become_visible(files: FileStore) -> None:
    with pytest.raises(DigestMismatch):
        await files.put(DIGEST, chunks(DATA[:-1] + b"!"), "image/jpeg", 2 * len(DATA))
    with pytest.raises(FileTooLarge):
        await files.put(DIGEST, chunks(DATA), "image/jpeg", len(DATA) - 1)
    with pytest.raises(BlobMissing):
        await read_all(files)


async def test_the_folder_is_sharded_and_keeps_no_temporary_files(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    await store.put(DIGEST, chunks(DATA), "application/octet-stream", len(DATA))
    with pytest.raises(DigestMismatch):
        await store.put(DIGEST, chunks(b"other"), "application/octet-stream", len(DATA))
    assert store.path(DIGEST) == tmp_path / DIGEST[:2] / DIGEST[2:4] / DIGEST
    kept = await asyncio.to_thread(lambda: [p for p in tmp_path.rglob("*") if p.is_file()])
    assert kept == [store.path(DIGEST)]


async def test_the_object_store_keys_files_under_the_prefix(moto_url: str) -> None:
    store = await s3_store(moto_url, "prefixed")
    try:
        await store.put(DIGEST, chunks(DATA), "image/jpeg", len(DATA))
        s3 = await store._s3()
        head = await s3.head_object(Bucket="prefixed", Key=f"edgefleet/files/{DIGEST[:2]}/{DIGEST}")
        assert (head["ContentLength"], head["ContentType"]) == (len(DATA), "image/jpeg")
    finally:
        await store.close()
