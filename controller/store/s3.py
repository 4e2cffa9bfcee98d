"""The file store in an S3-compatible object store: Alibaba OSS, MinIO, AWS S3.

Client: aiobotocore (aio-libs): botocore's request signing, retries and error
model on aiohttp, which the server already runs on. It speaks every S3 dialect
botocore covers (Alibaba OSS with virtual-hosted addressing, MinIO with path
addressing), and moto's S3 server tests it here on loopback.

An upload is spooled to a local temporary file first (``blobs.spool``: size and
digest checked, never whole in memory), then sent from that file, so an object
under a digest's key always holds exactly those bytes. Keys are
``<prefix>/<ab>/<digest>``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from edgefleet.controller.store.blobs import READ_CHUNK, BlobMissing, spool, spool_directory

if TYPE_CHECKING:
    from edgefleet.controller.settings import DataSettings


class S3FileStore:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        addressing_style: str = "virtual",
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client_args: dict[str, Any] = {
            "region_name": region,
            "endpoint_url": endpoint,
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
            "config": AioConfig(
                s3={"addressing_style": addressing_style},
                retries={"max_attempts": 3, "mode": "standard"},
                # Alibaba OSS and older MinIO refuse botocore's newer default checksums.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        }
        self._client: Any = None
        self._exit: contextlib.AsyncExitStack | None = None
        self._opening = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: DataSettings) -> S3FileStore:
        url = urlparse(settings.files_url or "")
        return cls(
            url.netloc,
            url.path,
            endpoint=settings.files_endpoint,
            region=settings.files_region,
            access_key=settings.files_access_key,
            secret_key=settings.files_secret_key,
            addressing_style=settings.files_addressing_style,
        )

    def key(self, sha256: str) -> str:
        name = f"{sha256[:2]}/{sha256}"
        return f"{self.prefix}/{name}" if self.prefix else name

    async def _s3(self) -> Any:
        async with self._opening:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                self._client = await stack.enter_async_context(
                    get_session().create_client("s3", **self._client_args)
                )
                self._exit = stack
        return self._client

    async def put(
        self, sha256: str, chunks: AsyncIterable[bytes], content_type: str, max_bytes: int
    ) -> int:
        temporary, size, _ = await spool(chunks, sha256, max_bytes, spool_directory())
        await self._send(temporary, sha256, size, content_type)
        return size

    async def add(
        self, chunks: AsyncIterable[bytes], content_type: str, max_bytes: int
    ) -> tuple[str, int]:
        temporary, size, sha256 = await spool(chunks, None, max_bytes, spool_directory())
        await self._send(temporary, sha256, size, content_type)
        return sha256, size

    async def _send(self, temporary: Path, sha256: str, size: int, content_type: str) -> None:
        """Upload the checked temporary file under its digest's key, then remove it."""
        try:
            s3 = await self._s3()
            body = await asyncio.to_thread(temporary.open, "rb")
            try:
                await s3.put_object(
                    Bucket=self.bucket,
                    Key=self.key(sha256),
                    Body=body,
                    ContentLength=size,
                    ContentType=content_type,
                )
            finally:
                await asyncio.to_thread(body.close)
        finally:
            await asyncio.to_thread(temporary.unlink, missing_ok=True)

    async def read(
        self, sha256: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        s3 = await self._s3()
        extra = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            answer = await s3.get_object(Bucket=self.bucket, Key=self.key(sha256), **extra)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BlobMissing(sha256) from exc
            raise
        async with answer["Body"] as body:
            while chunk := await body.read(READ_CHUNK):
                yield chunk

    async def delete(self, sha256: str) -> None:
        s3 = await self._s3()
        await s3.delete_object(Bucket=self.bucket, Key=self.key(sha256))

    async def close(self) -> None:
        if self._exit is not None:
            await self._exit.aclose()
            self._exit, self._client = None, None
