"""The plain-HTTP half of the device port (docs/protocol.md section 7).

- ``HEAD /files/{sha256}``: 200 if the cloud has the file, 404 if not;
- ``PUT /files/{sha256}``: the bytes as the body, streamed to the file store and
  checked against the digest before the file becomes visible: 201 stored, 200
  already there, 400 wrong digest, 413 over the limit, 401 bad credentials;
- ``GET /files/{sha256}``: an artifact (section 9), streamed from the store, one
  ``Range`` answered with 206, 416 when unsatisfiable; 404 for a digest no
  artifact names: a device never reads another device's uploads;
- ``POST /records``: the batch of an ``upload_data`` frame, for devices without a
  WebSocket session; the answer is that frame's ``data``;
- ``POST /api/v1/data/upload``: the railway data server's upload, its exact
  request and answer (``railway.py``).

Every request authenticates as a device (``device_auth.py``) and every upload
attempt, accepted or not, goes into the ingest log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from edgefleet.agent import protocol
from edgefleet.controller.store import Attempt, Store, StoreError
from edgefleet.controller.store.blobs import (
    DigestMismatch,
    FileStore,
    FileTooLarge,
    RangeNotSatisfiable,
)
from edgefleet.controller.store.downloads import send_file
from edgefleet.southbound import railway
from edgefleet.southbound.device_auth import DeviceAuth, Unauthorized
from edgefleet.southbound.events import (
    ArtifactDownloadEnded,
    ArtifactDownloadStarted,
    FileReceived,
    SessionEvents,
)
from edgefleet.southbound.ingest import Ingest

log = logging.getLogger("edgefleet.southbound.http")

SHA256 = re.compile(protocol.SHA256_PATTERN)
MAX_BATCH_BODY = 1024 * 1024
"""Largest ``POST /records`` body: an HTTP batch may be larger than a frame."""
CHUNK = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class DeviceHttp:
    def __init__(
        self,
        store: Store,
        files: FileStore,
        auth: DeviceAuth,
        ingest: Ingest,
        events: SessionEvents,
        max_file_bytes: int,
    ) -> None:
        self._store = store
        self._files = files
        self._auth = auth
        self._ingest = ingest
        self._events = events
        self._max_file_bytes = max_file_bytes

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("HEAD", "/files/{sha256}", self.head_file)
        app.router.add_get("/files/{sha256}", self.get_file, allow_head=False)
        app.router.add_put("/files/{sha256}", self.put_file)
        app.router.add_post("/records", self.post_records)
        app.router.add_post("/api/v1/data/upload", self.railway_upload)

    @staticmethod
    def _attempt(request: web.Request, device_id: int | None) -> Attempt:
        return Attempt(
            device_id, request.remote or "", request.headers.get("User-Agent", ""), "http"
        )

    async def _log(
        self, request: web.Request, device_id: int | None, status: str, message: str, **counts: Any
    ) -> None:
        try:
            await self._store.records.log_attempt(
                self._attempt(request, device_id), status, message, **counts
            )
        except StoreError:
            log.warning("ingest log not written: database unavailable", extra={"what": message})

    # --- files ------------------------------------------------------------------------------

    @staticmethod
    def _digest(request: web.Request) -> str:
        sha256 = request.match_info["sha256"]
        if not SHA256.match(sha256):
            raise web.HTTPBadRequest(text="the path must name a lower-case SHA-256 hex digest\n")
        return sha256

    async def head_file(self, request: web.Request) -> web.StreamResponse:
        sha256 = self._digest(request)
        device_id = await self._authenticated(request, upload=False)
        row = await self._indexed(sha256)
        if row is None:
            self._events.publish(FileReceived(device_id, "missing", 0))
            return web.Response(status=404)
        self._events.publish(FileReceived(device_id, "present", row["size"]))
        return web.Response(status=200, headers={"ETag": f'"{sha256}"', "X-Size": str(row["size"])})

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        sha256 = self._digest(request)
        device_id = await self._authenticated(request, upload=False)
        try:
            row = await self._store.artifacts.downloadable(sha256)
        except StoreError:
            raise web.HTTPServiceUnavailable(text="server busy\n") from None
        if row is None:
            raise web.HTTPNotFound(text="no artifact has this digest\n")
        resumed = request.headers.get("Range") is not None
        self._events.publish(ArtifactDownloadStarted(device_id, resumed))
        moved = [0]

        def sent(size: int) -> None:
            moved[0] += size

        result = "broken"
        try:
            response = await send_file(request, self._files, row, sent)
            result = "completed"
            return response
        except RangeNotSatisfiable as exc:
            result = "refused"
            raise web.HTTPRequestRangeNotSatisfiable(
                text=f"{exc}\n", headers={"Content-Range": f"bytes */{row['size']}"}
            ) from None
        finally:
            self._events.publish(ArtifactDownloadEnded(device_id, result, moved[0]))

    async def put_file(self, request: web.Request) -> web.StreamResponse:
        sha256 = self._digest(request)
        device_id = await self._authenticated(request)
        limit = self._max_file_bytes
        if request.content_length is not None and request.content_length > limit:
            await self._log(request, device_id, "refused", f"file {sha256} over {limit} bytes")
            self._events.publish(FileReceived(device_id, "too_big", 0))
            raise web.HTTPRequestEntityTooLarge(limit, request.content_length)
        if await self._indexed(sha256) is not None:
            self._events.publish(FileReceived(device_id, "exists", 0))
            return web.Response(status=200, text="already there\n")
        content_type = request.headers.get("Content-Type", "application/octet-stream")
        try:
            size = await self._files.put(
                sha256, request.content.iter_chunked(CHUNK), content_type, limit
            )
        except FileTooLarge:
            await self._log(request, device_id, "refused", f"file {sha256} over {limit} bytes")
            self._events.publish(FileReceived(device_id, "too_big", 0))
            raise web.HTTPRequestEntityTooLarge(limit, limit + 1) from None
        except DigestMismatch:
            await self._log(request, device_id, "refused", f"file {sha256}: digest mismatch")
            self._events.publish(FileReceived(device_id, "mismatch", 0))
            raise web.HTTPBadRequest(text="the body does not hash to the digest\n") from None
        try:
            created = await self._store.records.add_file(sha256, size, content_type)
        except StoreError:
            raise web.HTTPServiceUnavailable(text="server busy\n") from None
        await self._log(request, device_id, "success", f"file {sha256}", bytes=size)
        self._events.publish(FileReceived(device_id, "stored" if created else "exists", size))
        return web.Response(status=201 if created else 200, text="stored\n")

    async def _indexed(self, sha256: str) -> dict[str, Any] | None:
        try:
            return await self._store.records.file(sha256)
        except StoreError:
            raise web.HTTPServiceUnavailable(text="server busy\n") from None

    async def _authenticated(self, request: web.Request, upload: bool = True) -> int:
        """The device; refused credentials of an upload (not of a question) are logged."""
        try:
            return await self._auth.device(request)
        except Unauthorized as exc:
            if upload:
                await self._log(request, None, "refused", str(exc))
            headers = {"WWW-Authenticate": 'Basic realm="edgefleet"'} if exc.status == 401 else {}
            raise _status(exc.status)(text=f"{exc}\n", headers=headers) from None

    # --- records ------------------------------------------------------------------------------

    async def _json(self, request: web.Request, device_id: int | None) -> Any:
        raw = await request.content.read(MAX_BATCH_BODY + 1)
        if len(raw) > MAX_BATCH_BODY:
            await self._log(request, device_id, "refused", "body over 1 MiB")
            raise web.HTTPRequestEntityTooLarge(MAX_BATCH_BODY, len(raw))
        try:
            return protocol.loads(raw)
        except protocol.NotJson:
            await self._log(request, device_id, "refused", "body is not valid JSON")
            raise web.HTTPBadRequest(text="the body is not valid JSON\n") from None

    async def post_records(self, request: web.Request) -> web.StreamResponse:
        device_id = await self._authenticated(request)
        records, rejected = protocol.read_batch(await self._json(request, device_id))
        answer, message = await self._ingest.store(
            device_id, records, rejected, self._attempt(request, device_id)
        )
        if message is not None:
            return web.json_response({"message": message}, status=503)
        return web.json_response(answer)

    async def railway_upload(self, request: web.Request) -> web.StreamResponse:
        try:
            device_id = await self._authenticated(request)
        except web.HTTPException as exc:
            return railway.failure(exc.status, exc.text.strip() if exc.text else "unauthorized")
        try:
            record = railway.read(await self._json(request, device_id))
        except railway.BadUpload as exc:
            await self._log(request, device_id, "refused", str(exc), rejected=1)
            return railway.failure(400, str(exc))
        except web.HTTPException as exc:
            return railway.failure(exc.status, exc.text.strip() if exc.text else "bad request")
        answer, message = await self._ingest.store(
            device_id, [record], [], self._attempt(request, device_id)
        )
        if message is not None:
            return railway.failure(503, message)
        return railway.success(record, duplicate=bool(answer["duplicates"]))


def _status(status: int) -> type[web.HTTPException]:
    return {
        429: web.HTTPTooManyRequests,
        503: web.HTTPServiceUnavailable,
    }.get(status, web.HTTPUnauthorized)
