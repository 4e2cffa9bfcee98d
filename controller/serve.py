"""Running the services until SIGTERM or SIGINT, then shutting down cleanly."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import sys

from aiohttp import web

from controller.api.app import create_app
from controller.settings import Settings
from controller.store import Store

log = logging.getLogger("edgefleet.serve")


def api_token(settings: Settings) -> str:
    """The configured token, or in standalone mode a new one, printed once for the user."""
    if settings.api.token:
        return settings.api.token
    token = secrets.token_urlsafe(32)
    sys.stderr.write(
        "\nNo API token configured (EDGEFLEET_API_TOKEN); generated one for this run:\n"
        f"\n    Authorization: Bearer {token}\n\n"
    )
    sys.stderr.flush()
    return token


async def serve(settings: Settings) -> None:
    """Migrate the store, serve the northbound API, stop on SIGTERM/SIGINT."""
    store = Store.from_url(settings.db.url, settings.db.timeout, settings.db.pool_size)
    try:
        await store.migrate()
        app = create_app(store, settings.api, api_token(settings))
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.api.host, settings.api.port)
            await site.start()
            log.info(
                "northbound API listening",
                extra={"host": settings.api.host, "port": settings.api.port},
            )
            await _until_signalled()
            log.info("shutting down")
        finally:
            await runner.cleanup()
    finally:
        await store.close()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
