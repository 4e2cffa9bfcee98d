"""A device's WebSocket served by aiohttp, seen the way ``DeviceConnection`` sees a
websockets connection (``connection.WebSocket``).

The device port is an aiohttp application (``device_http.py``) because section 7
puts plain HTTP with streamed bodies on it (``PUT /files/…``, ``POST /records``),
which websockets' handshake-only HTTP cannot read. This adapter keeps the
connection and the session unchanged: text and binary messages come out of
``recv`` as before, a closed, failed or oversized connection raises websockets'
``ConnectionClosed`` (aiohttp has already closed it with 1009 for a message over
the limit, 1007 for invalid UTF-8, as websockets did).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import WSMsgType, web
from websockets.exceptions import ConnectionClosed

CLOSE_TIMEOUT = 3.0
"""Seconds a closing WebSocket waits for the device's half of the handshake; a
device that does not answer by then is gone anyway, and its TCP connection is cut."""


class AiohttpWebSocket:
    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self._ws = ws
        transport = request.transport
        self._transport = transport
        self._peer = transport.get_extra_info("peername") if transport else None

    @property
    def remote_address(self) -> Any:
        return self._peer

    async def recv(self) -> str | bytes:
        message = await self._ws.receive()
        if message.type is WSMsgType.TEXT or message.type is WSMsgType.BINARY:
            return message.data
        raise ConnectionClosed(None, None)

    async def send(self, message: str) -> None:
        if self._ws.closed:
            raise ConnectionClosed(None, None)
        try:
            await self._ws.send_str(message)
        except (ConnectionError, RuntimeError) as exc:
            raise ConnectionClosed(None, None) from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake, bounded: whatever aiohttp waits on (the device's
        answer, a receive still winding down), the TCP connection is cut when
        ``CLOSE_TIMEOUT`` is up. A plain timer does it, not a cancellation: under a
        server's shutdown aiohttp may be cancelling the handler's task itself."""
        transport = self._transport
        cut = None
        if transport is not None:
            cut = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, transport.abort)
        try:
            await self._ws.close(code=code, message=reason.encode())
        finally:
            if cut is not None:
                cut.cancel()
