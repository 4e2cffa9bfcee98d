"""Downloading devices' files: the bytes, their content type, ``ETag`` = the digest
(a file never changes), and single ``Range`` requests (206) for resumable
downloads."""

from __future__ import annotations

import re

from aiohttp import web

from edgefleet.controller.api.context import context, scope
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.errors import ApiError, ErrorType
from edgefleet.controller.api.schemas import FilePath
from edgefleet.controller.store import FileNotFound

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


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
    size, etag = row["size"], f'"{path.sha256}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=31536000, immutable",
        "Content-Type": row["content_type"],
    }
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    start, end, status = 0, size - 1, 200
    wanted = request.headers.get("Range")
    if wanted is not None and size > 0:
        start, end = _range(wanted, size)
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    if size:
        async for chunk in ctx.files.read(path.sha256, start, end):
            await response.write(chunk)
    await response.write_eof()
    return response


def _range(header: str, size: int) -> tuple[int, int]:
    """The one range a ``Range: bytes=…`` header asks for, within ``size``."""
    match = RANGE.match(header.strip())
    if match is None or match[1] == match[2] == "":
        raise ApiError(416, ErrorType.RECORD_ERROR, "only one byte range is served: bytes=a-b")
    if match[1] == "":  # the last n bytes
        start, end = max(0, size - int(match[2])), size - 1
    else:
        start = int(match[1])
        end = min(int(match[2]), size - 1) if match[2] else size - 1
    if start > end or start >= size:
        raise ApiError(
            416, ErrorType.RECORD_ERROR, f"range not satisfiable: the file has {size} bytes"
        )
    return start, end
