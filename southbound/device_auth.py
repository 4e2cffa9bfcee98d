"""Who is making a request on the device port's HTTP routes (section 7's files and
``POST /records``): the session token as a bearer token, or HTTP Basic
``device_id:password`` for a device that has no token.

Both go through the login gate (``login.py``), with its rate limits and its
constant-cost password check, exactly as a WebSocket login does. A device
uploading files makes a request per file, so an accepted credential is
remembered for ``ttl`` seconds (keyed by an HMAC of it with a per-process key,
so the memory holds no password): one check, then one dictionary lookup a
request. A disabled device or a changed password therefore takes up to ``ttl``
to lock out its HTTP requests (its WebSocket session ends at once).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time

from aiohttp import web

from edgefleet.agent import protocol
from edgefleet.southbound.login import LoginGate

CACHE_TTL = 30.0
CACHE_MAX = 50_000


class Unauthorized(Exception):
    """No usable credentials; ``status`` is 401, 429 (too many attempts) or 503
    (the database cannot check them now), ``str(exc)`` the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class DeviceAuth:
    def __init__(self, gate: LoginGate, ttl: float = CACHE_TTL) -> None:
        self._gate = gate
        self._ttl = ttl
        self._key = secrets.token_bytes(32)
        self._known: dict[bytes, tuple[int, float]] = {}

    async def device(self, request: web.Request) -> int:
        """The id of the device the request authenticates; raises ``Unauthorized``."""
        login = _login(request.headers.get("Authorization", ""))
        if login is None:
            raise Unauthorized(401, "Bearer token or Basic device_id:password required")
        key = hmac.new(self._key, _secret(login).encode(), hashlib.sha256).digest()
        now = time.monotonic()
        known = self._known.get(key)
        if known is not None and known[1] > now:
            return known[0]
        host = request.remote or "?"
        # The gate's throttle runs on the event loop's clock; a client that hung up
        # while its password waited for bcrypt is not worth checking.
        transport = request.transport
        admission = await self._gate.admit(
            login,
            host,
            asyncio.get_running_loop().time(),
            lambda: transport is not None and not transport.is_closing(),
        )
        if admission.refusal is not None:
            if admission.refusal == protocol.MSG_UNAVAILABLE:
                raise Unauthorized(503, admission.refusal)
            if admission.refusal == protocol.MSG_TOO_MANY_LOGINS:
                raise Unauthorized(429, admission.refusal)
            raise Unauthorized(401, admission.refusal)
        assert admission.device is not None
        if len(self._known) >= CACHE_MAX:
            self._known = {k: v for k, v in self._known.items() if v[1] > now}
        self._known[key] = (admission.device.device_id, now + self._ttl)
        return admission.device.device_id


def _secret(login: protocol.Login) -> str:
    return f"{login.device_id}\0{login.password or ''}\0{login.token or ''}"


def _login(header: str) -> protocol.Login | None:
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        device_id = value.split(".", 1)[0]  # tokens read <device_id>.<version>.<expiry>.<sig>
        return protocol.Login(device_id=device_id, token=value)
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        device_id, colon, password = decoded.partition(":")
        if colon and device_id and password:
            return protocol.Login(device_id=device_id, password=password)
    return None
