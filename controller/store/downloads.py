"""One way to send a stored file over HTTP, for the northbound (``GET
/api/v1/files/…``) and the device port (``GET /files/…``, artifacts): ``ETag`` =
the digest (a file never changes), ``Accept-Ranges``, a single ``Range`` answered
with 206 and ``Content-Range``, and the bytes streamed from the store chunk by
chunk, never held whole, whichever backend holds them.

It lives beside the file store because both servers may import the store and
nothing else of each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from edgefleet.controller.store.blobs import FileStore, byte_range


async def send_file(
    request: web.Request,
    files: FileStore,
    row: dict[str, Any],
    sent: Callable[[int], None] = lambda _: None,
) -> web.StreamResponse:
    """Answer ``request`` with the file of index row ``row`` (``sha256``, ``size``,
    ``content_type``); raises ``blobs.RangeNotSatisfiable`` before anything is sent.
    ``sent`` is told the size of each chunk written (what a download cut in the
    middle did move, too)."""
    sha256, size = row["sha256"], row["size"]
    etag = f'"{sha256}"'
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
        start, end = byte_range(wanted, size)
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    if size:
        async for chunk in files.read(sha256, start, end):
            await response.write(chunk)
            sent(len(chunk))
    await response.write_eof()
    return response
