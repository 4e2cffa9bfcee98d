"""The cloud half of one device's connection, as a sans-I/O state machine.

Theory of operation
-------------------
A ``DeviceSession`` owns the protocol rules of PROTOCOL.md for one connection and
nothing else: no sockets, no clock, no database. The adapter (``server.py``) feeds
it what happened — a frame arrived (``receive``), time passed (``tick``), the
credential check finished (``login_accepted`` / ``login_refused``), a caller wants
a command sent (``send_command``), the peer went away (``peer_closed``) — always
with the current time ``now``. The session answers by queueing frames to send
(``data_to_send``), events for the rest of the system (``events_received``), its
next deadline (``next_deadline``) and, once it is over, the close code and reason.

States (``STATE_TABLE`` below is the whole lifecycle):

- ``AWAITING_LOGIN``: connected, the first frame must come within the login timeout.
- ``AUTHENTICATING``: a login frame arrived; the adapter is checking it.
- ``ONLINE``: logged in and heard from within the tolerance.
- ``UNKNOWN``: logged in, but silent past the tolerance at least once; any frame
  brings it back online, the third silence in a row closes it.
- ``CLOSED``: over; a reason says why (``heartbeat_timeout``, ``closed_by_device``,
  ``superseded``, ``server_shutdown``, ``login_failed``, ``rate_limited``).

Heartbeat tolerance: the cloud expects a frame about every 5 s and tolerates 7.5 s
of silence while the failure count is 0, 5.5 s once it is above 0. Each silence
past the tolerance counts one failure and starts a new silence window.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from edgefleet.agent import protocol
from edgefleet.agent.protocol import CommandRefused, CommandResult
from edgefleet.agent.sansio import Outbox
from edgefleet.southbound.utilisation import Utilisation, UtilisationMeter


class State(enum.Enum):
    AWAITING_LOGIN = "awaiting_login"
    AUTHENTICATING = "authenticating"
    ONLINE = "online"
    UNKNOWN = "unknown"
    CLOSED = "closed"


# (state, what happened) -> next state. Anything not listed leaves the state alone;
# every state can close (``_close``), and CLOSED is final.
STATE_TABLE: dict[tuple[State, str], State] = {
    (State.AWAITING_LOGIN, "login_frame"): State.AUTHENTICATING,
    (State.AUTHENTICATING, "login_accepted"): State.ONLINE,
    (State.ONLINE, "silence"): State.UNKNOWN,
    (State.UNKNOWN, "silence"): State.UNKNOWN,
    (State.UNKNOWN, "frame"): State.ONLINE,
}
LOGGED_IN = (State.ONLINE, State.UNKNOWN)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_SUPERSEDED = 4000


@dataclass(frozen=True)
class Timings:
    """The cloud side's intervals, in seconds (defaults: ``agent.protocol``); the
    settings fill them, and tests scale them down."""

    login_timeout: float = protocol.LOGIN_TIMEOUT
    tolerance: float = protocol.HEARTBEAT_TOLERANCE
    tolerance_after_failure: float = protocol.HEARTBEAT_TOLERANCE_AFTER_FAILURE
    max_failures: int = protocol.MAX_FAILURES
    max_frames_per_second: int = protocol.MAX_FRAMES_PER_SECOND


# --- events ------------------------------------------------------------------


@dataclass(frozen=True)
class LoginRequested:
    login: protocol.Login


@dataclass(frozen=True)
class LoginFailed:
    message: str
    login: protocol.Login | None


@dataclass(frozen=True)
class LoggedIn:
    device_id: str


@dataclass(frozen=True)
class HeartbeatAnswered:
    pass


@dataclass(frozen=True)
class StateChanged:
    state: State
    failures: int = 0


@dataclass(frozen=True)
class StatusReceived:
    data: dict[str, Any]
    utilisation: Utilisation


@dataclass(frozen=True)
class StatusRejected:
    reason: str


@dataclass(frozen=True)
class FrameIgnored:
    """A frame the protocol says to ignore and count: ``reason`` is the metric label."""

    reason: str


@dataclass(frozen=True)
class CommandFinished:
    command_id: int
    result: CommandResult


@dataclass(frozen=True)
class DataReceived:
    """A batch of records (section 7) from a device that listed ``data``: the ones
    that passed the protocol's checks, and the rejected ones with their reasons.
    Its answer comes back through ``data_stored``."""

    request_id: str | None
    records: tuple[protocol.Record, ...]
    rejected: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ConfigReported:
    """A ``config_report`` (section 8) from a device that listed ``config``."""

    report: protocol.ConfigReport


@dataclass(frozen=True)
class SessionClosed:
    cause: str
    code: int
    reason: str


Event = (
    LoginRequested
    | LoginFailed
    | LoggedIn
    | HeartbeatAnswered
    | StateChanged
    | StatusReceived
    | StatusRejected
    | FrameIgnored
    | CommandFinished
    | DataReceived
    | ConfigReported
    | SessionClosed
)


# --- commands ------------------------------------------------------------------


@dataclass
class _Outstanding:
    command_id: int
    order: str
    deadline: float


@dataclass
class DeviceSession(Outbox[Event]):
    timings: Timings
    now: float
    state: State = State.AWAITING_LOGIN
    device_id: str | None = None
    failures: int = 0
    close_code: int | None = None
    close_reason: str = ""
    extensions: frozenset[str] = frozenset()
    """The extensions the device listed at login: the frames of sections 7 to 9 go
    only to a device that listed them."""
    echoes_request_id: bool = False
    """Whether the device supports ``Headers.request_id`` (it listed it, or has
    echoed one): until then it is a version-1 device, one command at a time."""

    _silence_since: float = 0.0
    _login_deadline: float = 0.0
    _commands: deque[_Outstanding] = field(default_factory=deque)
    _next_command_id: int = 1
    _next_config_id: int = 1
    _window_start: float = 0.0
    _window_frames: int = 0
    _utilisation: UtilisationMeter = field(default_factory=UtilisationMeter)

    def __post_init__(self) -> None:
        self._login_deadline = self.now + self.timings.login_timeout

    # --- outputs ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def next_deadline(self) -> float | None:
        if self.state is State.AWAITING_LOGIN:
            return self._login_deadline
        if self.state in LOGGED_IN:
            deadlines = [self._silence_since + self._tolerance()]
            deadlines += [c.deadline for c in self._commands]
            return min(deadlines)
        return None

    # --- inputs ------------------------------------------------------------------

    def receive(self, text: str | bytes, now: float) -> None:
        """A frame arrived from the device. Binary frames are protocol errors."""
        if self.state is State.AWAITING_LOGIN:
            self._receive_login(text)
        elif self.state in LOGGED_IN:
            self._receive_frame(text, now)
        # Frames while authenticating or closed are dropped: the device must wait.

    def login_accepted(
        self,
        device_id: str,
        now: float,
        extensions: frozenset[str],
        timings: Timings | None = None,
        **answer: Any,
    ) -> None:
        """``extensions``: what the device listed at login (section 6); ``timings``:
        this session's own (a device on a metered link); ``answer``: the extension
        keys of the login answer (token, intervals)."""
        if timings is not None:
            self.timings = timings
        self._move("login_accepted")
        self.device_id = device_id
        self.extensions = extensions
        self.echoes_request_id = "request_id" in extensions
        self._silence_since = now
        self._outgoing.append(protocol.login_success(device_id, **answer))
        self._events.append(LoggedIn(device_id))

    def login_refused(
        self, message: str, login: protocol.Login | None = None, code: int = CLOSE_POLICY
    ) -> None:
        self._outgoing.append(protocol.login_failure(message))
        self._events.append(LoginFailed(message, login))
        self._close("login_failed", code, message)

    def tick(self, now: float) -> None:
        """Time passed: fire every deadline at or before ``now``."""
        if self.state is State.AWAITING_LOGIN and now >= self._login_deadline:
            self._outgoing.append(protocol.login_failure(protocol.MSG_LOGIN_TIMEOUT))
            self._events.append(LoginFailed(protocol.MSG_LOGIN_TIMEOUT, None))
            self._close("login_failed", CLOSE_POLICY, protocol.MSG_LOGIN_TIMEOUT)
            return
        for command in [c for c in self._commands if c.deadline <= now]:
            self._commands.remove(command)
            self._finish(command, "timeout", "command timed out")
        while self.state in LOGGED_IN and now >= self._silence_since + self._tolerance():
            self._silence_since += self._tolerance()
            self.failures += 1
            if self.failures >= self.timings.max_failures:
                self._close(
                    "heartbeat_timeout",
                    CLOSE_GOING_AWAY,
                    "heartbeat timeout",
                )
                return
            if self.state is State.ONLINE:
                self._events.append(StateChanged(State.UNKNOWN, self.failures))
            self._move("silence")

    def send_command(self, order: str, params: dict[str, Any], timeout: float, now: float) -> int:
        """Queue a ``give_order``; its result arrives later as ``CommandFinished``.
        Raises ``CommandRefused`` when the device cannot take it now."""
        if self.state is State.UNKNOWN:
            raise CommandRefused("unknown")
        if self.state is not State.ONLINE:
            raise CommandRefused("offline")
        if order == protocol.UPDATE and protocol.UPDATE not in self.extensions:
            raise CommandRefused("unsupported")  # section 9: only to devices that listed it
        if self._commands and not self.echoes_request_id:
            raise CommandRefused("busy")
        command_id = self._next_command_id
        self._next_command_id += 1
        self._commands.append(_Outstanding(command_id, order, now + timeout))
        assert self.device_id is not None
        self._outgoing.append(protocol.order(self.device_id, order, params, str(command_id)))
        return command_id

    def data_stored(
        self, request_id: str | None, answer: dict[str, Any], message: str | None = None
    ) -> None:
        """The batch of a ``DataReceived`` was stored (or, with ``message``, could not
        be): queue its ``upload_data_result``."""
        if self.state in LOGGED_IN:
            self._outgoing.append(protocol.upload_data_result(answer, request_id, message))

    def send_config(self, version: int, config: dict[str, Any]) -> bool:
        """Queue a ``config_update``; False (nothing sent) when the device did not
        list ``config`` or the session is not logged in."""
        if self.state not in LOGGED_IN or "config" not in self.extensions:
            return False
        request_id = f"c-{self._next_config_id}"
        self._next_config_id += 1
        self._outgoing.append(protocol.config_update(version, config, request_id))
        return True

    def peer_closed(self) -> None:
        """The device (or the network) closed the connection."""
        if self.state is not State.CLOSED:
            self._close("closed_by_device", CLOSE_NORMAL, "closed by device")

    def close(self, cause: str, code: int, reason: str) -> None:
        """The server ends the session (``superseded``, ``server_shutdown``, …)."""
        if self.state is not State.CLOSED:
            self._close(cause, code, reason)

    # --- internals ---------------------------------------------------------------

    def _tolerance(self) -> float:
        if self.failures == 0:
            return self.timings.tolerance
        return self.timings.tolerance_after_failure

    def _move(self, happened: str) -> None:
        self.state = STATE_TABLE.get((self.state, happened), self.state)

    def _close(self, cause: str, code: int, reason: str) -> None:
        self.state = State.CLOSED
        self.close_code, self.close_reason = code, reason
        while self._commands:
            self._finish(self._commands.popleft(), "fail", CommandRefused.MESSAGES["offline"])
        self._events.append(SessionClosed(cause, code, reason))

    def _receive_login(self, text: str | bytes) -> None:
        try:
            if isinstance(text, bytes):
                raise protocol.LoginRefused(protocol.MSG_NOT_JSON)
            login = protocol.parse_login(text)
        except protocol.LoginRefused as exc:
            self._outgoing.append(protocol.login_failure(str(exc)))
            self._events.append(LoginFailed(str(exc), None))
            self._close("login_failed", CLOSE_POLICY, str(exc))
            return
        self._move("login_frame")
        self._events.append(LoginRequested(login))

    def _receive_frame(self, text: str | bytes, now: float) -> None:
        if self._over_rate_limit(now):
            return
        self._heard_from(now)
        if isinstance(text, bytes):
            self._events.append(FrameIgnored("binary"))
            return
        try:
            frame = protocol.parse_frame(text)
        except protocol.BadFrame as exc:
            self._events.append(FrameIgnored(str(exc)))
            return
        if frame.type == protocol.PING_PONG:
            self._outgoing.append(protocol.pong())
            self._events.append(HeartbeatAnswered())
        elif frame.type == protocol.STATUS_UPLOAD:
            self._receive_status(frame)
        elif frame.type == protocol.RESULT:
            self._receive_result(frame)
        elif frame.type == protocol.UPLOAD_DATA and "data" in self.extensions:
            self._receive_data(frame)
        elif frame.type == protocol.CONFIG_REPORT and "config" in self.extensions:
            self._events.append(ConfigReported(protocol.ConfigReport.read(frame)))
        else:
            self._events.append(FrameIgnored("unknown_type"))

    def _heard_from(self, now: float) -> None:
        self._silence_since = now
        if self.state is State.UNKNOWN:
            self._events.append(StateChanged(State.ONLINE))
        self.failures = 0
        self._move("frame")

    def _over_rate_limit(self, now: float) -> bool:
        """Frames past the per-second limit are dropped; twice the limit in one
        second closes the connection."""
        if now - self._window_start >= 1.0:
            self._window_start, self._window_frames = now, 0
        self._window_frames += 1
        limit = self.timings.max_frames_per_second
        if self._window_frames <= limit:
            return False
        if self._window_frames > 2 * limit:
            self._close("rate_limited", CLOSE_POLICY, "too many frames")
        else:
            self._events.append(FrameIgnored("rate_limited"))
        return True

    def _receive_status(self, frame: protocol.Frame) -> None:
        data = frame.data
        if not isinstance(data, dict):
            self._events.append(StatusRejected("not_an_object"))
            return
        sender = data.get("device_id")
        if not isinstance(sender, str | int) or str(sender) != self.device_id:
            self._events.append(StatusRejected("foreign_device_id"))
            return
        self._outgoing.append(protocol.status_response())
        utilisation = self._utilisation.read(protocol.StatusReport.read(data))
        self._events.append(StatusReceived(data, utilisation))

    def _receive_data(self, frame: protocol.Frame) -> None:
        """Every record is checked on its own: a malformed one is rejected with its
        reason and the rest of the batch goes on."""
        records, rejected = protocol.read_batch(frame.data)
        self._events.append(DataReceived(frame.request_id, tuple(records), tuple(rejected)))

    def _receive_result(self, frame: protocol.Frame) -> None:
        command = self._match(frame.request_id)
        if command is None:
            self._events.append(FrameIgnored("unexpected_result"))
            return
        message = frame.headers.get("message")
        message = message if isinstance(message, str) else ""
        status = "success" if frame.status == "success" else "fail"
        if command.order == "restart" and status == "success":
            if message != protocol.RESTART_WAIT_MESSAGE:
                self._finish(command, "fail", f"unexpected restart answer: {message!r}")
                return
            self._outgoing.append(protocol.restart_confirm())
            self._finish(command, "success", "restart confirmed")
            return
        self._finish(command, status, message, frame.data)

    def _match(self, request_id: str | None) -> _Outstanding | None:
        """Results carrying our ``request_id`` match exactly; others go to the oldest."""
        if request_id is not None:
            for command in self._commands:
                if str(command.command_id) == request_id:
                    self.echoes_request_id = True
                    self._commands.remove(command)
                    return command
        return self._commands.popleft() if self._commands else None

    def _finish(self, command: _Outstanding, status: str, message: str, data: Any = None) -> None:
        result = CommandResult(status, message, data)
        self._events.append(CommandFinished(command.command_id, result))
