"""The device half of one connection, as a sans-I/O state machine.

Theory of operation
-------------------
``AgentSession`` owns the device-side rules of docs/protocol.md for one WebSocket
connection: the login exchange, the heartbeat and status timers, failure counting,
the restart handshake. It has no socket and no clock. The adapter (``runner.py``)
feeds it what happened — a frame arrived (``receive``), time passed (``tick``), a
status snapshot is ready (``status_collected``), a command finished
(``command_finished``), the connection dropped (``connection_lost``) — always with
the current time ``now``. The session answers with frames to send
(``data_to_send``), events for the adapter (``events_received``) and its next
deadline (``next_deadline``). The fake-clock tests in ``tests/agent`` drive it
through every timing rule without sleeping.

Timers, with the defaults of docs/protocol.md:

- A ping waits ``answer_timeout`` (3 s) for its pong; a miss counts one failure and
  the next ping goes at once. After a pong, the next ping is due ``ping_interval``
  (5 s) after the latest frame the device sent: a status upload or a command result
  replaces a heartbeat.
- A status upload waits 3 s for its answer; a miss counts one failure and the status
  is sent again at once; after an answer the next upload is due ``status_interval``
  (15 s) after this one was sent.
- Any answered frame resets the failure count; at ``max_failures`` (3) the device
  drops the connection.

Between connections, ``Backoff`` decides how long to wait before the next attempt.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field, replace
from typing import Any

from edgefleet.agent import protocol
from edgefleet.agent.sansio import Outbox


class Phase(enum.Enum):
    LOGGING_IN = "logging_in"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(frozen=True)
class Timings:
    """Every interval of the device side, in seconds; tests scale them down.

    ``ping_interval`` and ``status_interval`` are replaced by the values the server
    announces at login (extension), so one server setting paces the whole fleet.
    """

    ping_interval: float = protocol.HEARTBEAT_INTERVAL
    status_interval: float = protocol.STATUS_INTERVAL
    """Between two status uploads; on a metered link, the longest gap between two."""
    status_probe_interval: float = protocol.STATUS_INTERVAL
    """On a metered link: how often the status is read, to see whether it moved."""
    status_change_percent: float | None = None
    """On a metered link (announced by the server): how far a percentage must move
    for the status to be sent before ``status_interval`` is up; None: always send."""
    answer_timeout: float = protocol.ANSWER_TIMEOUT
    max_failures: int = protocol.MAX_FAILURES
    login_timeout: float = 30.0
    """How long a device waits for the answer to its login (a busy server checks
    passwords in turn)."""
    restart_wait: float = protocol.RESTART_WAIT


# --- events --------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedIn:
    device_id: str
    token: str | None = field(repr=False)
    token_expires_at: str | None


@dataclass(frozen=True)
class LoginRejected:
    message: str
    with_token: bool

    @property
    def token_refused(self) -> bool:
        """The token itself was refused (not the server being busy): forget it."""
        return self.with_token and self.message not in (
            protocol.MSG_UNAVAILABLE,
            protocol.MSG_TOO_MANY_LOGINS,
        )


@dataclass(frozen=True)
class StatusDue:
    """Collect a status snapshot and hand it to ``status_collected``."""


@dataclass(frozen=True)
class CommandReceived:
    """Run a command and hand its outcome to ``command_finished``."""

    name: str
    builtin: bool
    params: dict[str, Any]
    request_id: str | None
    remote_dir: str | None = None


@dataclass(frozen=True)
class RestartNow:
    confirmed: bool


@dataclass(frozen=True)
class HeartbeatMissed:
    what: str  # "pong" | "status_response"
    failures: int


@dataclass(frozen=True)
class FrameIgnored:
    reason: str


@dataclass(frozen=True)
class DataAnswered:
    """The cloud's ``upload_data_result`` for the batch sent with ``request_id``."""

    request_id: str | None
    success: bool
    message: str
    data: dict[str, Any]


@dataclass(frozen=True)
class ConfigReceived:
    """A ``config_update`` (section 8): apply it and hand the outcome to
    ``config_applied``."""

    version: int
    config: dict[str, Any]
    request_id: str | None


@dataclass(frozen=True)
class Closed:
    reason: str  # login_failed | login_timeout | heartbeat_failed | connection_lost | local


Event = (
    LoggedIn
    | LoginRejected
    | StatusDue
    | CommandReceived
    | RestartNow
    | HeartbeatMissed
    | FrameIgnored
    | DataAnswered
    | ConfigReceived
    | Closed
)


# --- the session -----------------------------------------------------------------


@dataclass
class AgentSession(Outbox[Event]):
    timings: Timings
    login: protocol.Login
    now: float
    phase: Phase = Phase.LOGGING_IN
    device_id: str | None = None
    failures: int = 0
    close_reason: str = ""

    _login_deadline: float = 0.0
    _last_sent: float = 0.0
    _ping_sent: float | None = None
    _status_sent: float | None = None
    _status_requested: bool = False
    _next_status: float = 0.0
    _restart_deadline: float | None = None
    _uploaded: tuple[float, protocol.StatusReport] | None = None  # when, what: the last one
    _uploaded_cpu: float | None = None  # the CPU use the cloud derived from it

    def __post_init__(self) -> None:
        self._outgoing.append(self.login.encode())
        self._login_deadline = self.now + self.timings.login_timeout

    # --- outputs -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    def next_deadline(self) -> float | None:
        if self.phase is Phase.LOGGING_IN:
            return self._login_deadline
        if self.phase is Phase.CLOSED:
            return None
        deadlines = [self._ping_due()]
        if self._status_sent is not None:
            deadlines.append(self._status_sent + self.timings.answer_timeout)
        elif not self._status_requested:
            deadlines.append(self._next_status)
        if self._restart_deadline is not None:
            deadlines.append(self._restart_deadline)
        return min(deadlines)

    # --- inputs ----------------------------------------------------------------------

    def receive(self, text: str | bytes, now: float) -> None:
        if self.phase is Phase.LOGGING_IN:
            self._receive_login_answer(text, now)
        elif self.phase is Phase.RUNNING:
            self._receive_frame(text, now)

    def tick(self, now: float) -> None:
        """Time passed: fire every deadline at or before ``now``."""
        if self.phase is Phase.LOGGING_IN:
            if now >= self._login_deadline:
                self._close("login_timeout")
            return
        if self.phase is not Phase.RUNNING:
            return
        if self._ping_sent is not None and now >= self._ping_sent + self.timings.answer_timeout:
            self._ping_sent = None
            if not self._missed("pong"):
                return
            self._send_ping(now)
        if self._status_sent is not None and now >= self._status_sent + self.timings.answer_timeout:
            self._status_sent = None
            if not self._missed("status_response"):
                return
            self._request_status()
        if self._restart_deadline is not None and now >= self._restart_deadline:
            self._restart_deadline = None
            self._events.append(RestartNow(confirmed=False))
        if self._ping_sent is None and now >= self._ping_due():
            self._send_ping(now)
        if self._status_sent is None and not self._status_requested and now >= self._next_status:
            self._request_status()

    def status_collected(self, status: dict[str, Any], now: float) -> None:
        """The snapshot asked for by ``StatusDue`` is ready: upload it (on a metered
        link, only if it moved or ``status_interval`` is up)."""
        self._status_requested = False
        if self.phase is not Phase.RUNNING:
            return
        assert self.device_id is not None
        report = protocol.StatusReport.read(status)
        if not self._worth_sending(report, now):
            self._next_status = now + self.timings.status_probe_interval
            return
        if self._uploaded is not None:
            self._uploaded_cpu = report.cpu_percent_since(self._uploaded[1])
        self._uploaded = (now, report)
        self._send(protocol.status_upload(self.device_id, status), now)
        self._status_sent = now

    def _worth_sending(self, report: protocol.StatusReport, now: float) -> bool:
        threshold = self.timings.status_change_percent
        if threshold is None or self._uploaded is None:
            return True
        sent_at, sent = self._uploaded
        if now - sent_at >= self.timings.status_interval:
            return True
        moved = [
            (report.memory_used_percent(), sent.memory_used_percent()),
            (report.disk_used_percent(), sent.disk_used_percent()),
            (report.cpu_percent_since(sent), self._uploaded_cpu),
        ]
        return any(
            now_ is not None and then is not None and abs(now_ - then) >= threshold
            for now_, then in moved
        )

    def command_finished(
        self, status: str, message: str, data: Any, request_id: str | None, now: float
    ) -> None:
        if self.phase is Phase.RUNNING:
            self._send(protocol.command_result(status, message, data, request_id), now)

    def send_data(self, records: list[dict[str, Any]], request_id: str, now: float) -> bool:
        """Send a batch of records (section 7); False when not logged in. Its answer
        comes as ``DataAnswered``; like a status upload, it replaces a heartbeat."""
        if self.phase is not Phase.RUNNING:
            return False
        self._send(protocol.upload_data(records, request_id), now)
        return True

    def config_applied(
        self,
        version: int | None,
        reported: Any,
        message: str | None,
        request_id: str | None,
        now: float,
    ) -> None:
        """Report what the device runs (section 8): after an update (``message``: it
        could not be applied), or by itself (no ``request_id``). Only to a cloud the
        device told it speaks ``config``."""
        if self.phase is Phase.RUNNING and "config" in self.login.extensions:
            self._send(protocol.config_report(version, reported, message, request_id), now)

    def connection_lost(self) -> None:
        if self.phase is not Phase.CLOSED:
            self._close("connection_lost")

    def close(self) -> None:
        """The device ends the session itself (shutdown, restart)."""
        if self.phase is not Phase.CLOSED:
            self._close("local")

    # --- internals ---------------------------------------------------------------------

    def _close(self, reason: str) -> None:
        self.phase = Phase.CLOSED
        self.close_reason = reason
        self._events.append(Closed(reason))

    def _send(self, frame: str, now: float) -> None:
        self._outgoing.append(frame)
        self._last_sent = now

    def _send_ping(self, now: float) -> None:
        self._send(protocol.ping(), now)
        self._ping_sent = now

    def _ping_due(self) -> float:
        if self._ping_sent is not None:
            return self._ping_sent + self.timings.answer_timeout
        return self._last_sent + self.timings.ping_interval

    def _request_status(self) -> None:
        self._status_requested = True
        self._events.append(StatusDue())

    def _missed(self, what: str) -> bool:
        """Count a missed answer; False when that was one too many and the session ended."""
        self.failures += 1
        self._events.append(HeartbeatMissed(what, self.failures))
        if self.failures >= self.timings.max_failures:
            self._close("heartbeat_failed")
            return False
        return True

    def _receive_login_answer(self, text: str | bytes, now: float) -> None:
        answer = protocol.parse_login_answer(text)
        if not answer.success:
            self._events.append(LoginRejected(answer.message, self.login.token is not None))
            self._close("login_failed")
            return
        self.phase = Phase.RUNNING
        self.device_id = answer.device_id
        self.timings = replace(
            self.timings,
            ping_interval=answer.heartbeat_interval or self.timings.ping_interval,
            status_interval=answer.status_interval or self.timings.status_interval,
            status_change_percent=answer.status_change_percent,
        )
        assert answer.device_id is not None
        self._events.append(LoggedIn(answer.device_id, answer.token, answer.token_expires_at))
        self._last_sent = now
        self._request_status()  # the first status goes at once, so the fleet view fills fast

    def _receive_frame(self, text: str | bytes, now: float) -> None:
        try:
            frame = protocol.parse_frame(text)
        except protocol.BadFrame as exc:
            self._events.append(FrameIgnored(str(exc)))
            return
        if frame.type == protocol.PING_PONG and self._ping_sent is not None:
            self._ping_sent = None
            self.failures = 0
        elif frame.type == protocol.STATUS_RESPONSE and self._status_sent is not None:
            metered = self.timings.status_change_percent is not None
            gap = self.timings.status_probe_interval if metered else self.timings.status_interval
            self._next_status = self._status_sent + gap
            self._status_sent = None
            self.failures = 0
        elif frame.type == protocol.ORDER:
            self._receive_order(frame, now)
        elif frame.type == protocol.UPLOAD_DATA_RESULT:
            self.failures = 0
            data = frame.data if isinstance(frame.data, dict) else {}
            message = frame.headers.get("message")
            self._events.append(
                DataAnswered(
                    frame.request_id,
                    frame.status == "success",
                    message if isinstance(message, str) else "",
                    data,
                )
            )
        elif frame.type == protocol.CONFIG_UPDATE and "config" in self.login.extensions:
            data = frame.data if isinstance(frame.data, dict) else {}
            version, config = data.get("version"), data.get("config")
            if isinstance(version, int) and isinstance(config, dict):
                self._events.append(ConfigReceived(version, config, frame.request_id))
            else:
                self._events.append(FrameIgnored("bad_config_update"))
        elif frame.type == protocol.RESTART_CONFIRM and self._restart_deadline is not None:
            self._restart_deadline = None
            self._events.append(RestartNow(confirmed=True))
        else:
            self._events.append(FrameIgnored(f"unexpected:{frame.type}"))

    def _receive_order(self, frame: protocol.Frame, now: float) -> None:
        name = frame.headers.get("order_type")
        data = frame.data if isinstance(frame.data, dict) else {}
        request_id = frame.request_id
        if not isinstance(name, str) or not name:
            self._refuse("order_type missing", request_id, now)
            return
        builtin = frame.headers.get("isInner") is True
        if builtin and name == "restart":
            self._send(
                protocol.command_result("success", protocol.RESTART_WAIT_MESSAGE, None, request_id),
                now,
            )
            self._restart_deadline = now + self.timings.restart_wait
            return
        if builtin and name == "upload_log":
            remote_dir = data.get("remote_dir")
            if not isinstance(remote_dir, str) or not remote_dir:
                remote_dir = protocol.DEFAULT_REMOTE_DIR
            self._events.append(CommandReceived(name, True, {}, request_id, remote_dir))
            return
        if builtin and name == protocol.UPDATE:
            try:
                artifact = protocol.read_artifact(data.get("artifact"))
            except ValueError as exc:
                self._refuse(str(exc), request_id, now)
                return
            self._events.append(CommandReceived(name, True, {"artifact": artifact}, request_id))
            return
        if builtin:
            self._refuse(protocol.UNKNOWN_ORDER_MESSAGE, request_id, now)
            return
        params = data.get("params", {})
        if not isinstance(params, dict):
            self._refuse("params must be a JSON object", request_id, now)
            return
        self._events.append(CommandReceived(name, False, params, request_id))

    def _refuse(self, message: str, request_id: str | None, now: float) -> None:
        self._send(protocol.command_result("fail", message, None, request_id), now)


# --- between connections ------------------------------------------------------------


@dataclass
class Backoff:
    """How long to wait before reconnecting: ``base`` doubling per failed attempt up
    to ``cap``, plus up to ``jitter * base`` at random so a fleet that lost its server
    at the same instant does not come back at the same instant."""

    base: float = protocol.RECONNECT_DELAY
    cap: float = 60.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def next_delay(self) -> float:
        self.attempts += 1
        delay = self.base * 2 ** min(self.attempts - 1, 16)
        return min(self.cap, delay + self.rng.uniform(0, self.jitter * self.base))

    def reset(self) -> None:
        """A session got through login: the next outage starts from ``base`` again."""
        self.attempts = 0
