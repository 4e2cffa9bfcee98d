"""``GET /api/v1/stream``: Server-Sent Events of what happens in the fleet.

The events come from the process's ``EventHub`` (``controller/stream.py``), which
reads the device log once for every client. This handler only checks the
filters, replays what a resuming client missed (``Last-Event-ID``), and writes
its queue as it fills. aiohttp-sse sends the headers, the keep-alive comments,
and aborts a connection whose writes the peer stops acknowledging.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from aiohttp_sse import sse_response

from edgefleet.controller.api.context import context, scope
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.errors import bad_request
from edgefleet.controller.api.routing import EVENT_STREAM
from edgefleet.controller.api.schemas import StreamQuery
from edgefleet.controller.store import DatabaseUnavailable
from edgefleet.controller.stream import STREAM_TYPES, Subscription

SEND_TIMEOUT = 30.0


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise bad_request("header Last-Event-ID: must be an event id")
    return int(raw)


@endpoints.get(
    "/stream",
    summary="Server-Sent Events: device.state, device.status, command.result, … of the "
    "devices you may see; resume with Last-Event-ID",
    tag="stream",
    errors=(404,),
    permission="devices:read",
    media=EVENT_STREAM,
)
async def event_stream(request: web.Request, query: StreamQuery) -> web.StreamResponse:
    ctx = context(request)
    where = scope(request)
    # The query's pattern admits only known types.
    types = frozenset(query.types.split(",")) if query.types else frozenset(STREAM_TYPES)
    last = _last_event_id(request)
    if query.device_id is not None:
        await ctx.store.devices.get(query.device_id, where)
    if query.group_id is not None:
        await ctx.store.groups.get(query.group_id, where)
    hub = ctx.events
    try:
        # The hub reads where the log ends first: at start-up, or while the
        # database is away, wait for it as long as any query would.
        async with asyncio.timeout(ctx.store.db.timeout):
            await hub.started.wait()
    except TimeoutError:
        raise DatabaseUnavailable("the event log cannot be read yet") from None
    async with sse_response(
        request, ping_interval=hub.settings.keepalive, send_timeout=SEND_TIMEOUT
    ) as response:
        transport = request.transport
        sub = Subscription(
            scope=where,
            device_id=query.device_id,
            group_id=query.group_id,
            types=types,
            limit=hub.settings.client_queue,
            abort=transport.abort if transport else lambda: None,
        )
        until = hub.subscribe(sub)
        try:
            if last is not None:
                replayed = await hub.replay(sub, last, until)
                sub.replayed = {event.event_id for event in replayed}
                for event in replayed:
                    sub.sent_id = max(sub.sent_id, event.event_id)
                await _write(response, b"".join(e.frame(e.event_id) for e in replayed))
            await _pump(sub, response)
        except (ConnectionResetError, TimeoutError):
            pass  # the client left, or stopped reading: it resumes with Last-Event-ID
        finally:
            hub.unsubscribe(sub)
    return response


async def _write(response: web.StreamResponse, data: bytes) -> None:
    if data:
        async with asyncio.timeout(SEND_TIMEOUT):
            await response.write(data)


async def _pump(sub: Subscription, response: web.StreamResponse) -> None:
    """Write the queue whenever it fills, until the client leaves or is cut off."""
    closed = asyncio.ensure_future(response.wait())  # ends when a keep-alive write fails
    try:
        while not sub.cut:
            woken = asyncio.ensure_future(sub.wake.wait())
            await asyncio.wait({woken, closed}, return_when=asyncio.FIRST_COMPLETED)
            woken.cancel()
            if closed.done():
                return
            if not sub.cut:
                await _write(response, sub.take())
    finally:
        closed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closed
