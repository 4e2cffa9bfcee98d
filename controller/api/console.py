"""The web console at ``/console/``: a single page for the people who run the fleet.

Theory of operation
-------------------
The page is a handful of build-free ES modules and one style sheet in
``console-static/``, served from this package: nothing to build, no Node.js, no
CDN, no third-party code to vendor (the whole console is smaller than most UI
libraries alone). The browser loads ``index.html``, which names every module as a
``modulepreload`` so they arrive in one round trip, and the script draws each page
from the public REST API and the event stream (``/api/v1/stream``, read with
``fetch`` so the token travels in a header) — the console has no endpoint of its own.

Tokens: sign-in sets the refresh token as an HttpOnly, Secure, SameSite=Strict
cookie scoped to ``/api/v1/auth`` (``api/auth.py``); the script keeps only the
short-lived access token, in memory, and sends it as a bearer header, which no
other site can make a browser send (no CSRF). The Content-Security-Policy admits
scripts, styles and requests from this server only, no inline script or style
(an injected ``<script>`` would not run), and images from here or the ``blob:``
URLs the script makes of devices' files. The page's text comes from the message
catalogues ``i18n/en.json`` and ``i18n/zh-CN.json``.

``/`` redirects here. The page and its files are public (they hold no data);
everything they show comes from the API, which asks for a token.
"""

from __future__ import annotations

import functools
from pathlib import Path

from aiohttp import web

from edgefleet.controller.api.static_files import StaticFiles

CONSOLE_PATH = "/console/"
STATIC_DIR = Path(__file__).with_name("console-static")
INDEX = "index.html"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        # The scripts never write HTML or code from strings (no innerHTML, no eval):
        # browsers that know Trusted Types refuse every such sink outright.
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidated on every load (a 304 when unchanged): an upgrade reaches the
    # browser at once, and the modules of one version always load together.
    "Cache-Control": "no-cache",
}


def is_console_path(path: str) -> bool:
    """The console's page and files need no token; ``/`` is its redirect."""
    return path == "/" or path == CONSOLE_PATH.rstrip("/") or path.startswith(CONSOLE_PATH)


@functools.cache
def console_files() -> StaticFiles:
    """Every file of the console, by its path under ``CONSOLE_PATH``."""
    return StaticFiles(STATIC_DIR, HEADERS)


def add_console(app: web.Application) -> None:
    files = console_files()

    async def to_console(_request: web.Request) -> web.Response:
        raise web.HTTPFound(CONSOLE_PATH)

    async def page(request: web.Request) -> web.Response:
        return files.response(request, INDEX, "no such console file")

    async def static(request: web.Request) -> web.Response:
        return files.response(request, request.match_info["name"], "no such console file")

    app.router.add_get("/", to_console)
    app.router.add_get(CONSOLE_PATH.rstrip("/"), to_console)
    app.router.add_get(CONSOLE_PATH, page)
    app.router.add_get(CONSOLE_PATH + "{name:.+}", static)
