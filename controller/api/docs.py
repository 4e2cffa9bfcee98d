"""The API's documentation: the OpenAPI document and a page that renders it.

The page is Swagger UI 5, which reads OpenAPI 3.1 (the 4.x line stops at 3.0). It
is vendored in ``docs-static/swagger-ui/`` — version, licence and checksums in the
README there — and served from this package, never from a CDN: the docs work on a
network that reaches nothing but this server.

The page carries no inline script (``docs-static/docs.js`` starts Swagger UI and
reads the document's URL from a ``data-`` attribute), so its
Content-Security-Policy allows scripts, styles and requests to this server only.
Under ``/api/docs/static/`` only the files shipped in ``docs-static`` are served;
any other path is 404.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from aiohttp import web

from edgefleet.controller.api.endpoints import API_PREFIX
from edgefleet.controller.api.static_files import StaticFiles

DOCS_PATH = "/api/docs"
OPENAPI_PATH = f"{API_PREFIX}/openapi.json"
STATIC_PATH = f"{DOCS_PATH}/static"
STATIC_DIR = Path(__file__).with_name("docs-static")

# Swagger UI draws its icons as data: images; "Try it out" calls this server.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgefleet API</title>
<link rel="icon" href="{static}/swagger-ui/favicon-32x32.png">
<link rel="stylesheet" href="{static}/swagger-ui/swagger-ui.css"></head>
<body><div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{static}/swagger-ui/swagger-ui-bundle.js"></script>
<script src="{static}/docs.js"></script>
</body></html>
"""


def is_docs_path(path: str) -> bool:
    """The docs need no token: a browser loads them before anyone can type one in,
    and they hold no data."""
    return path in (DOCS_PATH, OPENAPI_PATH) or path.startswith(STATIC_PATH + "/")


def static_files() -> dict[str, Path]:
    """Every file served under ``STATIC_PATH``, by its path there."""
    return {name: found.path for name, found in _served().files.items()}


@functools.cache
def _served() -> StaticFiles:
    return StaticFiles(STATIC_DIR, {"Cache-Control": "public, max-age=3600"})


def add_docs(app: web.Application, document: dict[str, Any]) -> None:
    """``OPENAPI_PATH`` (the document), ``DOCS_PATH`` (the page) and its static files."""
    page = PAGE.format(static=STATIC_PATH, openapi=OPENAPI_PATH)
    files = _served()
    page_headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }

    async def openapi_json(_request: web.Request) -> web.Response:
        return web.json_response(document)

    async def docs_page(_request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html", headers=page_headers)

    async def static(request: web.Request) -> web.Response:
        return files.response(request, request.match_info["name"], "no such documentation file")

    app.router.add_get(OPENAPI_PATH, openapi_json)
    app.router.add_get(DOCS_PATH, docs_page)
    app.router.add_get(STATIC_PATH + "/{name:.*}", static)
