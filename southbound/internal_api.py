"""The southbound's internal HTTP API, for the controller in Kubernetes mode.

The controller finds the instance holding a device's session in
``device_sessions.address`` and asks it here for the live status (and its last
hour), or to run a command. Bearer-token auth with a token shared through a
Secret; plain JSON, no envelope: only the controller talks to it.
"""

from __future__ import annotations

import hmac
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler

from edgefleet.agent.protocol import CommandRefused, CommandResult

PREFIX = "/internal/v1/devices/{device_id:[0-9]{1,19}}"
MAX_TIMEOUT = 300.0


class Devices(Protocol):
    """What the internal API serves: the southbound's answers about its sessions."""

    def status(self, device_id: int) -> dict[str, Any]:
        """The live status view; raises ``CommandRefused("offline")``."""

    def status_history(self, device_id: int, since: float) -> list[dict[str, Any]]:
        """The last hour's kept samples; raises ``CommandRefused("offline")``."""

    async def command(
        self, device_id: int, order: str, params: dict[str, Any], timeout: float
    ) -> CommandResult: ...

    async def disconnect(self, device_id: int, reason: str) -> None: ...

    def push_config(self, device_ids: list[int]) -> None:
        """Queue the configuration push to those of the devices held here."""

    def deliver_queued(self, device_id: int) -> None:
        """Deliver the device's queued commands, if its session is here."""


DEVICES = web.AppKey("devices", Devices)


def _refused(exc: CommandRefused) -> web.Response:
    return web.json_response({"refused": exc.kind}, status=409)


def _device_id(request: web.Request) -> int:
    return int(request.match_info["device_id"])


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "body is not JSON"}') from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "body is not an object"}')
    return body


async def status(request: web.Request) -> web.Response:
    try:
        return web.json_response(request.app[DEVICES].status(_device_id(request)))
    except CommandRefused as exc:
        return _refused(exc)


async def history(request: web.Request) -> web.Response:
    try:
        since = float(request.query.get("since", "0"))
    except ValueError:
        return web.json_response({"error": "since must be a number"}, status=400)
    try:
        samples = request.app[DEVICES].status_history(_device_id(request), since)
    except CommandRefused as exc:
        return _refused(exc)
    return web.json_response({"samples": samples})


async def command(request: web.Request) -> web.Response:
    body = await _body(request)
    if not isinstance(body.get("order"), str):
        return web.json_response({"error": "order required"}, status=400)
    params = body.get("params") if isinstance(body.get("params"), dict) else {}
    timeout = body.get("timeout")
    if not isinstance(timeout, int | float) or not 0 < timeout <= MAX_TIMEOUT:
        return web.json_response({"error": f"timeout must be in (0, {MAX_TIMEOUT:g}]"}, status=400)
    try:
        result = await request.app[DEVICES].command(
            _device_id(request), body["order"], params, float(timeout)
        )
    except CommandRefused as exc:
        return _refused(exc)
    return web.json_response(
        {"status": result.status, "message": result.message, "data": result.data}
    )


async def disconnect(request: web.Request) -> web.Response:
    reason = (await _body(request)).get("reason")
    await request.app[DEVICES].disconnect(
        _device_id(request), reason if isinstance(reason, str) else "ended"
    )
    return web.json_response({"disconnected": True})


async def deliver_queued(request: web.Request) -> web.Response:
    request.app[DEVICES].deliver_queued(_device_id(request))
    return web.json_response({"queued": True})


async def push_config(request: web.Request) -> web.Response:
    device_ids = (await _body(request)).get("device_ids")
    if not isinstance(device_ids, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in device_ids
    ):
        return web.json_response({"error": "device_ids must be a list of integers"}, status=400)
    request.app[DEVICES].push_config(device_ids)
    return web.json_response({"queued": len(device_ids)})


def create_internal_app(devices: Devices, token: str) -> web.Application:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            return web.json_response({"error": "unauthorized"}, status=401)
        return await handler(request)

    app = web.Application(middlewares=[authenticate])
    app[DEVICES] = devices
    app.router.add_get(PREFIX + "/status", status)
    app.router.add_get(PREFIX + "/history", history)
    app.router.add_post(PREFIX + "/commands", command)
    app.router.add_post(PREFIX + "/disconnect", disconnect)
    app.router.add_post(PREFIX + "/queue", deliver_queued)
    app.router.add_post("/internal/v1/config/push", push_config)
    return app
