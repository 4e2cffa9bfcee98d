"""The southbound's internal HTTP API, for the controller in Kubernetes mode.

The controller finds the instance holding a device's session in
``device_sessions.address`` and asks it here for the live status or to run a
command. Bearer-token auth with a token shared through a Secret; plain JSON,
no envelope: only the controller talks to it.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from aiohttp import web

from edgefleet.southbound.session import CommandRefused

if TYPE_CHECKING:
    from edgefleet.southbound.server import Southbound

PREFIX = "/internal/v1/devices/{device_id:[0-9]{1,19}}"
SOUTHBOUND = web.AppKey("southbound", object)


def refused(exc: CommandRefused) -> web.Response:
    return web.json_response({"refused": exc.kind}, status=409)


async def status(request: web.Request) -> web.Response:
    southbound: Southbound = request.app[SOUTHBOUND]  # type: ignore[assignment]
    try:
        entry = southbound.status(int(request.match_info["device_id"]))
    except CommandRefused as exc:
        return refused(exc)
    return web.json_response(
        {
            "state": entry.state,
            "last_seen": entry.last_seen,
            "cpu_percent": entry.cpu_percent,
            "memory_used_percent": entry.memory_used_percent,
            "disk_used_percent": entry.disk_used_percent,
            "latest": entry.latest,
        }
    )


async def command(request: web.Request) -> web.Response:
    southbound: Southbound = request.app[SOUTHBOUND]  # type: ignore[assignment]
    body = await request.json()
    if not isinstance(body, dict) or not isinstance(body.get("order"), str):
        return web.json_response({"error": "order required"}, status=400)
    params = body.get("params") if isinstance(body.get("params"), dict) else {}
    timeout = body.get("timeout")
    if not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        return web.json_response({"error": "timeout must be in (0, 300]"}, status=400)
    try:
        finished = await southbound.command(
            int(request.match_info["device_id"]), body["order"], params, float(timeout)
        )
    except CommandRefused as exc:
        return refused(exc)
    return web.json_response(
        {"status": finished.status, "message": finished.message, "data": finished.data}
    )


async def disconnect(request: web.Request) -> web.Response:
    southbound: Southbound = request.app[SOUTHBOUND]  # type: ignore[assignment]
    body = await request.json()
    reason = body.get("reason") if isinstance(body, dict) else None
    await southbound.disconnect(
        int(request.match_info["device_id"]), reason if isinstance(reason, str) else "ended"
    )
    return web.json_response({"disconnected": True})


def create_internal_app(southbound: Southbound, token: str) -> web.Application:
    @web.middleware
    async def authenticate(request: web.Request, handler):  # type: ignore[no-untyped-def]
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            return web.json_response({"error": "unauthorized"}, status=401)
        return await handler(request)

    app = web.Application(middlewares=[authenticate])
    app[SOUTHBOUND] = southbound
    app.router.add_get(PREFIX + "/status", status)
    app.router.add_post(PREFIX + "/commands", command)
    app.router.add_post(PREFIX + "/disconnect", disconnect)
    return app
