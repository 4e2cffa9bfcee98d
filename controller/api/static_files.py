"""Files shipped inside this package and served as they are: the docs page's and
the console's.

Only the files found in the folder at start-up, with a known suffix, are served;
any other name is 404, so nothing else on the disk is reachable. Each file is
read once; its gzip form is made on the first request that accepts it and kept,
so a page's every asset costs one compression per process. An ETag (the
content's digest) lets a browser revalidate with a 304 instead of loading again.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
COMPRESSIBLE = {".html", ".js", ".css", ".json", ".svg"}


@dataclass
class StaticFile:
    path: Path
    body: bytes
    etag: str
    _gzipped: bytes | None = field(default=None, repr=False)

    @property
    def gzipped(self) -> bytes:
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=9, mtime=0)
        return self._gzipped


class StaticFiles:
    """The served files of ``directory`` by their path relative to it."""

    def __init__(self, directory: Path, headers: dict[str, str]) -> None:
        self.directory = directory
        self.headers = {"X-Content-Type-Options": "nosniff", **headers}
        self.files: dict[str, StaticFile] = {}
        for path in sorted(directory.rglob("*")):
            if path.suffix in CONTENT_TYPES and path.is_file():
                body = path.read_bytes()
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                self.files[path.relative_to(directory).as_posix()] = StaticFile(path, body, etag)

    def response(self, request: web.Request, name: str, reason: str) -> web.Response:
        """The file ``name``, compressed when the browser takes gzip; 404 with
        ``reason`` when there is no such file."""
        found = self.files.get(name)
        if found is None:
            raise web.HTTPNotFound(reason=reason)
        suffix = found.path.suffix
        headers = {**self.headers, "ETag": found.etag, "Vary": "Accept-Encoding"}
        if found.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = CONTENT_TYPES[suffix]
        body = found.body
        if suffix in COMPRESSIBLE and "gzip" in request.headers.get("Accept-Encoding", ""):
            body = found.gzipped
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)
