"""The thin asyncio adapter between one WebSocket and its ``DeviceSession``.

It reads frames until the session's next deadline, feeds them (or the passing of
time) to the session, sends what the session wants sent, and turns the session's
events into side effects: credential checks, database records, live status,
metrics, command results. It holds no protocol rule of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from edgefleet.agent import protocol
from edgefleet.controller.store import DatabaseUnavailable
from edgefleet.southbound.session import (
    CLOSE_TRY_AGAIN_LATER,
    CommandFinished,
    DeviceSession,
    Event,
    FrameIgnored,
    HeartbeatAnswered,
    LoggedIn,
    LoginFailed,
    LoginRequested,
    SessionClosed,
    State,
    StateChanged,
    StatusReceived,
    StatusRejected,
)

if TYPE_CHECKING:
    from edgefleet.southbound.server import Southbound

log = logging.getLogger("edgefleet.southbound")


class DeviceConnection:
    def __init__(self, websocket: ServerConnection, southbound: Southbound) -> None:
        self.websocket = websocket
        self.southbound = southbound
        self.loop = asyncio.get_running_loop()
        self.session = DeviceSession(southbound.timings, self.loop.time())
        self.device_id: int | None = None
        self._lock = asyncio.Lock()
        self._pending: dict[int, asyncio.Future[CommandFinished]] = {}
        self._last_frame = 0.0

    @property
    def address(self) -> str:
        host, port, *_ = self.websocket.remote_address or ("?", 0)
        return f"{host}:{port}"

    async def run(self) -> None:
        session = self.session
        receiving: asyncio.Task[str | bytes] | None = None
        try:
            while not session.closed:
                if receiving is None:
                    receiving = asyncio.ensure_future(self.websocket.recv())
                deadline = session.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - self.loop.time())
                # The receive is not cancelled when the deadline passes: under load
                # the timer can fire in the same loop turn the frame arrived in,
                # and a frame that arrived in time must count before the deadline.
                await asyncio.wait([receiving], timeout=timeout)
                async with self._lock:
                    if receiving.done():
                        message, receiving = self._received(receiving), None
                        if message is None:
                            session.peer_closed()
                        else:
                            self._heard(message)
                    else:
                        session.tick(self.loop.time())
                    await self._flush()
        finally:
            if receiving is not None:
                receiving.cancel()
        with contextlib.suppress(ConnectionClosed):
            await self.websocket.close(session.close_code or 1000, session.close_reason)

    async def command(
        self, order: str, params: dict[str, Any], timeout: float, remote_dir: str | None
    ) -> CommandFinished:
        """Send a command and wait for its result; raises ``CommandRefused``."""
        async with self._lock:
            command_id = self.session.send_command(
                order, params, timeout, self.loop.time(), remote_dir
            )
            result: asyncio.Future[CommandFinished] = self.loop.create_future()
            self._pending[command_id] = result
            await self._flush()
        started = time.perf_counter()
        try:
            return await asyncio.wait_for(asyncio.shield(result), timeout)
        except TimeoutError:
            # The read loop sleeps until its own deadline; let the session see
            # that this command's deadline passed.
            async with self._lock:
                self.session.tick(self.loop.time())
                await self._flush()
            return await result
        finally:
            self.southbound.metrics.command_latency.observe(time.perf_counter() - started)

    async def end(self, cause: str, code: int, reason: str) -> None:
        """Close from the server side (superseded, shutting down)."""
        async with self._lock:
            self.session.close(cause, code, reason)
            await self._flush()
        with contextlib.suppress(ConnectionClosed):
            await self.websocket.close(code, reason)

    # --- internals ---------------------------------------------------------------

    @staticmethod
    def _received(receiving: asyncio.Task[str | bytes]) -> str | bytes | None:
        """The frame a finished receive got, or None once the connection is gone."""
        try:
            return receiving.result()
        except ConnectionClosed:
            return None

    def _heard(self, message: str | bytes) -> None:
        now = self.loop.time()
        if self._last_frame and self.session.state in (State.ONLINE, State.UNKNOWN):
            self.southbound.metrics.frame_gap.observe(now - self._last_frame)
        self._last_frame = now
        if self.device_id is not None and (entry := self.southbound.live.get(self.device_id)):
            entry.last_seen = time.time()
        self.session.receive(message, now)

    async def _flush(self) -> None:
        """Send queued frames, then act on events (which may queue more)."""
        while True:
            for frame in self.session.data_to_send():
                with contextlib.suppress(ConnectionClosed):
                    await self.websocket.send(frame)
            events = self.session.events_received()
            if not events:
                return
            for event in events:
                await self._on(event)

    async def _on(self, event: Event) -> None:
        southbound = self.southbound
        metrics = southbound.metrics
        match event:
            case LoginRequested(login=login):
                host = self.address.rsplit(":", 1)[0]
                identity = login.device_id or f"{login.device_sn}/{login.device_model}"
                if not southbound.throttle.allow(host, identity, self.loop.time()):
                    self.session.login_refused(protocol.MSG_TOO_MANY_LOGINS, login)
                    return
                try:
                    verdict = await southbound.credentials.check(login)
                except DatabaseUnavailable:
                    # Not the device's fault: tell it to come back (close 1013).
                    self.session.login_refused(
                        protocol.MSG_UNAVAILABLE, login, code=CLOSE_TRY_AGAIN_LATER
                    )
                    return
                if verdict.refusal is not None:
                    southbound.throttle.failed(host, self.loop.time())
                    if verdict.device_id is not None:
                        southbound.record_login_failure(verdict.device_id, verdict.refusal)
                    self.session.login_refused(verdict.refusal, login)
                    return
                assert verdict.device_id is not None
                self.device_id = verdict.device_id
                await southbound.attach(self, verdict)
                self.session.login_accepted(
                    str(verdict.device_id),
                    self.loop.time(),
                    **southbound.login_extensions(verdict),
                )
            case LoginFailed(message=message):
                metrics.logins.labels(LOGIN_RESULTS.get(message, "refused")).inc()
            case LoggedIn():
                metrics.logins.labels("success").inc()
                southbound.went_online(self)
            case HeartbeatAnswered():
                metrics.heartbeats.inc()
            case StateChanged(state=state):
                southbound.state_changed(self, state.value, event.failures)
            case StatusReceived(data=data):
                metrics.statuses.labels("accepted").inc()
                southbound.status_received(self, data)
            case StatusRejected(reason=reason):
                metrics.statuses.labels(reason).inc()
            case FrameIgnored(reason=reason):
                metrics.bad_frames.labels(reason).inc()
            case CommandFinished(command_id=command_id):
                future = self._pending.pop(command_id, None)
                if future is not None and not future.done():
                    future.set_result(event)
            case SessionClosed(cause=cause):
                metrics.disconnects.labels(cause).inc()
                if self.device_id is not None and cause != "login_failed":
                    southbound.detach(self, cause)


# Login failure messages -> the ``result`` label of ``edgefleet_logins``.
LOGIN_RESULTS = {
    protocol.MSG_NOT_JSON: "invalid_frame",
    protocol.MSG_NO_SECRET: "invalid_frame",
    protocol.MSG_NO_IDENTITY: "invalid_frame",
    protocol.MSG_UNKNOWN_DEVICE: "unknown_device",
    protocol.MSG_WRONG_PASSWORD: "wrong_password",
    protocol.MSG_BAD_TOKEN: "bad_token",
    protocol.MSG_LOGIN_TIMEOUT: "timeout",
    protocol.MSG_DISABLED: "disabled",
    protocol.MSG_TOO_MANY_LOGINS: "rate_limited",
    protocol.MSG_UNAVAILABLE: "unavailable",
}
