"""The thin asyncio adapter between one WebSocket and its ``DeviceSession``.

It reads frames until the session's next deadline, feeds them (or the passing of
time) to the session, sends what the session wants sent, and turns the session's
events into calls on its three collaborators: the login gate (is this login
good?), the session table (the session begins, ends, runs commands) and the
session events (everything else, for whoever listens). It holds no protocol rule
of its own, and no feature: a feature is a listener of the events.

However its handler ends — the device left, the server closed it, or a bug
raised — the session is closed and detached from the table (``run``'s
``finally``), so a device is never left ``online`` without a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import functools
import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed

from edgefleet.agent import protocol
from edgefleet.agent.protocol import CommandRefused, CommandResult
from edgefleet.southbound import events as announce
from edgefleet.southbound.events import SessionEvents
from edgefleet.southbound.login import Admission, LoginGate, login_result
from edgefleet.southbound.session import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_TRY_AGAIN_LATER,
    CommandFinished,
    ConfigReported,
    DataReceived,
    DeviceSession,
    Event,
    FrameIgnored,
    HeartbeatAnswered,
    LoggedIn,
    LoginFailed,
    LoginRequested,
    SessionClosed,
    StateChanged,
    StatusReceived,
    StatusRejected,
    Timings,
)
from edgefleet.southbound.sessions import SessionTable

log = logging.getLogger("edgefleet.southbound")


class Due(enum.Enum):
    """What the read loop gets instead of a frame when the session's deadline passed."""

    DEADLINE = "deadline"


class WebSocket(Protocol):
    """What a connection needs of its WebSocket: the part of websockets'
    ``ServerConnection`` it uses, which ``southbound/websocket.py`` also provides
    over aiohttp's. ``recv`` and ``send`` raise ``ConnectionClosed`` once it is gone."""

    @property
    def remote_address(self) -> Any: ...

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class DeviceConnection:
    def __init__(
        self,
        websocket: WebSocket,
        timings: Timings,
        gate: LoginGate,
        table: SessionTable,
        events: SessionEvents,
    ) -> None:
        self.websocket = websocket
        self._gate = gate
        self._table = table
        self._events = events
        self.loop = asyncio.get_running_loop()
        self.session = DeviceSession(timings, self.loop.time())
        self.device_id: int | None = None
        self._refused: Admission | None = None  # why the gate refused the login
        self._admitted = False  # the login frame reached the gate
        self._lock = asyncio.Lock()
        self._pending: dict[int, asyncio.Future[CommandResult]] = {}
        self._last_frame: float | None = None
        # The read loop (_next_frame): its task, parked in a receive or not, the
        # alarm for the session's next deadline and whether it rang. The context the
        # alarm runs in is made once per connection, not once per timer.
        self._task: asyncio.Task[Any] | None = None
        self._parked = False
        self._alarm: asyncio.Handle | None = None
        self._alarm_for = 0.0  # the deadline the alarm is set for
        self._rang = False
        self._context = contextvars.copy_context()
        self._watching: asyncio.Task[str | bytes] | None = None  # during a login check

    @property
    def peer(self) -> str:
        host, port, *_ = self.websocket.remote_address or ("?", 0)
        return f"{host}:{port}"

    @property
    def _host(self) -> str:
        return self.peer.rsplit(":", 1)[0]

    async def run(self) -> None:
        self._task = asyncio.current_task()
        self._events.publish(announce.Connected(self.peer))
        try:
            await self._converse()
        except Exception:
            log.exception("device connection failed", extra={"device_id": self.device_id})
            self._abandon("internal_error", CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            # Cancelled (the server is going away), or closed: either way detached,
            # before anything is awaited — a command must not reach a session whose
            # handler is stopping.
            self._abandon("server_shutdown", CLOSE_GOING_AWAY, "server shutting down")
            if self._alarm is not None:
                self._alarm.cancel()
                self._alarm = None
            if self._watching is not None:
                self._watching.cancel()
        if self._watching is not None:
            # aiohttp's close waits for a receive still running to finish it.
            await asyncio.wait([self._watching])
        with contextlib.suppress(ConnectionClosed):
            await self.websocket.close(self.session.close_code or 1000, self.session.close_reason)

    async def _converse(self) -> None:
        session = self.session
        self._arm()  # the login's deadline
        while not session.closed:
            frame = await self._next_frame()
            async with self._lock:
                if frame is Due.DEADLINE:
                    session.tick(self.loop.time())
                elif frame is None:
                    session.peer_closed()
                else:
                    self._heard(frame)
                await self._flush()

    async def _next_frame(self) -> str | bytes | Due | None:
        """The next frame (None once the connection is gone), or ``Due.DEADLINE``
        when the session's next deadline passed first.

        The frame is awaited right here, in the connection's own task: one await
        for each frame, no task, future or timer of its own (at 10,000 devices that
        scaffolding was a tenth of the server's time, py-spy). The deadline is the
        alarm's (``_arm``), which interrupts this await by cancelling the task —
        both WebSocket libraries' receives are safe to cancel: an unread frame stays
        buffered for the next one (a cancel inside aiohttp's own closing handshake,
        after a protocol error, only cuts that handshake short). Only the receive
        started while a login was checked (``_login``) runs as a task of its own;
        an alarm leaves it reading, and the next call takes it — or, when it got
        its frame just as the deadline passed, that frame counts first."""
        watching, self._watching = self._watching, None
        self._parked = True
        try:
            if watching is None:
                return await self.websocket.recv()
            return await asyncio.shield(watching)
        except ConnectionClosed:
            return None
        except asyncio.CancelledError:
            assert self._task is not None
            if not self._rang or self._task.uncancel():  # not only the alarm: stop
                self._watching = watching  # for ``run``'s end to cancel
                raise
            if watching is not None and watching.done():
                return self._frame_of(watching)
            self._watching = watching
            return Due.DEADLINE
        finally:
            self._parked = self._rang = False

    @staticmethod
    def _frame_of(receive: asyncio.Task[str | bytes]) -> str | bytes | None:
        try:
            return receive.result()
        except ConnectionClosed:
            return None

    def _arm(self) -> None:
        """Have the alarm ring at the session's next deadline. Frames move that
        deadline later all the time (every heartbeat does), so an alarm set
        earlier is left to ring and set itself again (``_ring``): one timer a
        device per deadline period, not one per frame."""
        deadline = self.session.next_deadline()
        if self._alarm is not None:
            if deadline is not None and self._alarm_for <= deadline:
                return
            self._alarm.cancel()
            self._alarm = None
        if deadline is not None:
            self._set_alarm(deadline)

    def _set_alarm(self, deadline: float) -> None:
        """At least a millisecond from now: uvloop's clock counts whole milliseconds,
        and for a delay that rounds to none it returns a plain handle run at the
        next turn — a deadline a fraction of a millisecond ahead would ring every
        turn until the millisecond is over. (``call_later``, not ``call_at``: uvloop's
        ``call_at`` reads its clock again, and may round the millisecond away.)"""
        self._alarm_for = deadline
        delay = max(deadline - self.loop.time(), 0.001)
        self._alarm = self.loop.call_later(delay, self._ring, context=self._context)

    def _ring(self) -> None:
        self._alarm = None
        deadline = self.session.next_deadline()
        if deadline is None:
            return
        if deadline > self.loop.time():
            self._set_alarm(deadline)
            return
        # The receive is interrupted one loop turn later, so that a frame read in the
        # same turn as this timer counts before the deadline. On the standard loop
        # the timer runs after that turn's I/O, and the receive's wakeup is already
        # queued; on uvloop timers run first, and a frame read in the turn before
        # has its wakeup queued ahead of this.
        self.loop.call_soon(self._interrupt, context=self._context)

    def _interrupt(self) -> None:
        """Cancel the receive the task is parked in. A task busy with a frame or a
        command is left alone: its ``_flush`` ends by setting the alarm again,
        which rings within a millisecond for a deadline already passed."""
        if self._parked and not self._rang and self._task is not None:
            self._rang = True
            self._task.cancel()

    def _abandon(self, cause: str, code: int, reason: str) -> None:
        """Close and detach a session whose handler stopped without closing it: the
        device must not stay attached, ``online``, without a connection. Nothing of
        the session is trusted any more, so its events are not processed; the
        callers of pending commands are told the device is offline."""
        if not self.session.closed:
            self.session.close(cause, code, reason)
            self.session.events_received()
            offline = CommandResult("fail", CommandRefused.MESSAGES["offline"])
            for future in self._pending.values():
                if not future.done():
                    future.set_result(offline)
            self._events.publish(announce.ConnectionEnded(cause))
        if self.device_id is not None:  # a no-op when the session closed normally
            self._table.detach(self, self.device_id, cause)

    async def send_command(
        self, order: str, params: dict[str, Any], timeout: float
    ) -> Awaitable[CommandResult]:
        """Send a command; raises ``CommandRefused`` before sending anything when the
        session cannot take it. Returns its result to come, which always comes: the
        command's deadline is one of the session's (the alarm rings for it), and a
        closing session finishes every command it has."""
        async with self._lock:
            command_id = self.session.send_command(order, params, timeout, self.loop.time())
            result: asyncio.Future[CommandResult] = self.loop.create_future()
            self._pending[command_id] = result
            await self._flush()
        return result

    async def answer_data(
        self, request_id: str | None, answer: dict[str, Any], message: str | None = None
    ) -> None:
        """Send the answer to a batch of records through the session, so it takes its
        turn with the other frames; nothing once the session is over."""
        async with self._lock:
            self.session.data_stored(request_id, answer, message)
            await self._flush()

    async def send_config(self, version: int, config: dict[str, Any]) -> bool:
        """Send a ``config_update`` through the session, in turn with the other
        frames; False when the device cannot take one."""
        async with self._lock:
            sent = self.session.send_config(version, config)
            await self._flush()
        return sent

    async def end(self, cause: str, code: int, reason: str) -> None:
        """Close from the server side (superseded, disabled, shutting down)."""
        async with self._lock:
            self.session.close(cause, code, reason)
            await self._flush()
        with contextlib.suppress(ConnectionClosed):
            await self.websocket.close(code, reason)

    # --- internals ---------------------------------------------------------------

    def _heard(self, message: str | bytes) -> None:
        now = self.loop.time()
        if self.device_id is not None and not self.session.closed:
            gap = None if self._last_frame is None else now - self._last_frame
            self._events.publish(announce.FrameReceived(self.device_id, gap, time.time()))
        self._last_frame = now
        self.session.receive(message, now)

    async def _flush(self) -> None:
        """Send queued frames, then act on events (which may queue more); then set
        the alarm for the session's next deadline, which any of it may have moved."""
        while True:
            for frame in self.session.data_to_send():
                with contextlib.suppress(ConnectionClosed):
                    await self.websocket.send(frame)
            events = self.session.events_received()
            if not events:
                break
            for event in events:
                await self._on(event)
        self._arm()

    async def _on(self, event: Event) -> None:
        device_id = self.device_id
        match event:
            case LoginRequested(login=login):
                await self._login(login)
            case LoginFailed(message=message):
                if not self._admitted:
                    self._gate.malformed(self._host, self.loop.time())
                refused = self._refused
                reason = (refused and refused.reason) or login_result(message)
                device = refused.device_id if refused else None
                self._events.publish(announce.LoginFailed(device, reason, message, self.peer))
            case LoggedIn():
                pass  # the table announced it when it attached the session
            case CommandFinished(command_id=command_id, result=result):
                future = self._pending.pop(command_id, None)
                if future is not None and not future.done():
                    future.set_result(result)
            case SessionClosed(cause=cause):
                self._events.publish(announce.ConnectionEnded(cause))
                if device_id is not None:
                    self._table.detach(self, device_id, cause)
            case _ if device_id is None:
                return
            case HeartbeatAnswered():
                self._events.publish(announce.HeartbeatAnswered(device_id))
            case StateChanged(state=state, failures=failures):
                self._events.publish(
                    announce.StateChanged(device_id, state.value, failures, time.time())
                )
            case StatusReceived(data=data, utilisation=utilisation):
                self._events.publish(
                    announce.StatusReceived(device_id, data, utilisation, time.time())
                )
            case StatusRejected(reason=reason):
                self._events.publish(announce.StatusRejected(device_id, reason))
            case FrameIgnored(reason=reason):
                self._events.publish(announce.FrameIgnored(device_id, reason))
            case ConfigReported(report=report):
                self._events.publish(announce.ConfigReported(device_id, report, time.time()))
            case DataReceived(request_id=request_id, records=records, rejected=rejected):
                answer = functools.partial(self.answer_data, request_id)
                self._events.publish(
                    announce.DataReceived(
                        device_id, request_id, records, rejected, self._host, answer, time.time()
                    )
                )

    async def _login(self, login: protocol.Login) -> None:
        # The next frame is read while the login is checked, so that a device that
        # leaves meanwhile is seen leaving (``_open``); ``_next_frame`` takes it.
        self._watching = self.loop.create_task(self.websocket.recv(), context=self._context)
        admission = await self._gate.admit(login, self._host, self.loop.time(), self._open)
        self._admitted = True
        if admission.waited is not None or admission.reason in ("overloaded", "abandoned"):
            outcome = admission.reason or ("refused" if admission.refusal else "accepted")
            self._events.publish(announce.PasswordChecked(admission.waited or 0.0, outcome))
        if admission.refusal is not None:
            self._refused = admission
            self.session.login_refused(admission.refusal, login, code=admission.code)
            return
        assert admission.device is not None
        if admission.verified is not None:
            device = admission.device
            verified = announce.CredentialVerified(
                device.device_id, device.credential_version, admission.verified
            )
            self._events.publish(verified)
        if not self._open():
            # Checked too late: the device left meanwhile, and may be back on a newer
            # connection that this one must not supersede.
            self.session.peer_closed()
            return
        self.device_id = admission.device.device_id
        attached = await self._table.attach(
            self, admission.device, admission.by_token, login.extensions
        )
        if not attached:
            self.device_id = None
            self.session.login_refused(protocol.MSG_UNAVAILABLE, login, code=CLOSE_TRY_AGAIN_LATER)
            return
        self.session.login_accepted(
            str(self.device_id),
            self.loop.time(),
            login.extensions,
            admission.timings,
            **admission.answer,
        )

    def _open(self) -> bool:
        """Whether the device is still there: the receive that runs meanwhile has
        not seen the connection close."""
        watching = self._watching
        if watching is None or not watching.done() or watching.cancelled():
            return watching is not None
        return watching.exception() is None
