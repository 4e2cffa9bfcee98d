"""Downloading devices' files: the bytes, their content type, ``ETag`` = the digest
(a file never changes), and single ``Range`` requests (206) for resumable
downloads."""

from __future__ import annotations

from aiohttp import web

from edgefleet.controller.api.context import context, scope
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.errors import ApiError, ErrorType
from edgefleet.controller.api.schemas import FilePath
from edgefleet.controller.store import FileNotFound
from edgefleet.controller.store.blobs import RangeNotSatisfiable
from edgefleet.controller.store.downloads import send_file


@endpoints.get(
    "/files/{sha256}",
    summary="A file from a device (its content type; ETag = digest; Range)",
    tag="data",
    errors=(404, 416),
    media="application/octet-stream",
    permission="records:read",
)
async def download_file(request: web.Request, path: FilePath) -> web.StreamResponse:
    ctx = context(request)
    row = await ctx.store.records.file(path.sha256, scope(request))
    if row is None:
        raise FileNotFound(path.sha256)
    try:
        return await send_file(request, ctx.files, row)
    except RangeNotSatisfiable as exc:
        raise ApiError(416, ErrorType.RECORD_ERROR, str(exc)) from None
