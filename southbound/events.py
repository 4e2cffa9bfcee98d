"""What happens to device connections and sessions, announced to whoever listens.

Theory of operation
-------------------
The connections (``connection.py``) and the session table (``sessions.py``) say
what happened — a device logged in, went silent, uploaded its status, left, was
sent a command — and know nothing of who cares. Every feature that reacts is a
listener: the live status, the database recorder, the metrics, the activity log,
the Kubernetes status writer (and, as they come, data ingest, configuration push
and queued-command delivery). A new feature subscribes to the events it needs;
it never adds a line to the session or the connection.

Listeners are called synchronously, in the order they subscribed, on the event
loop: they must not block. One that has I/O to do (the recorder, the status
writer) queues the work for a task of its own. A listener that raises is logged
and skipped; the others and the session carry on.

Times in events are wall-clock seconds (``time.time()``): they end up in the
database, the resources and the metrics.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from edgefleet.agent.protocol import UPDATE, CommandResult, ConfigReport, Record
from edgefleet.southbound.utilisation import Utilisation

log = logging.getLogger("edgefleet.southbound.events")


@dataclass(frozen=True)
class DeviceIdentity:
    """Who a login turned out to be, as the database knows the device."""

    device_id: int
    name: str
    namespace: str
    type: str
    resource: str | None
    """The Device resource's name in Kubernetes mode, else None."""
    credential_version: int


# --- connections (every WebSocket, logged in or not) ----------------------------------


@dataclass(frozen=True)
class Connected:
    peer: str


@dataclass(frozen=True)
class ConnectionEnded:
    """Any connection closed, with its cause (``login_failed`` for one that never
    logged in)."""

    cause: str


@dataclass(frozen=True)
class LoginFailed:
    device_id: int | None
    """Set when the frame named a device that exists."""
    reason: str
    """A short label: ``wrong_password``, ``unknown_device``, ``rate_limited``…"""
    message: str
    """What the device was told."""
    peer: str


@dataclass(frozen=True)
class PasswordChecked:
    """A login that needed bcrypt: how long it waited for its turn, and how it
    ended (``accepted``, ``refused``, ``overloaded`` — no turn in time, answered
    "server busy" — or ``abandoned``: its connection left while it waited)."""

    waited: float
    outcome: str


@dataclass(frozen=True)
class CredentialVerified:
    """A password passed bcrypt: its keyed digest is remembered for the next login
    (``southbound.credentials``); never the password itself."""

    device_id: int
    credential_version: int
    digest: str = field(repr=False)


# --- sessions (a logged-in device) -------------------------------------------------------


@dataclass(frozen=True)
class LoggedIn:
    device: DeviceIdentity
    peer: str
    by_token: bool
    extensions: frozenset[str]
    """What the device listed at login (``agent.protocol.EXTENSIONS``): a listener
    sends an extension frame only to a device that listed it."""
    at: float


@dataclass(frozen=True)
class FrameReceived:
    device_id: int
    gap: float | None
    """Seconds since the device's previous frame (None for the first)."""
    at: float


@dataclass(frozen=True)
class HeartbeatAnswered:
    device_id: int


@dataclass(frozen=True)
class StateChanged:
    device_id: int
    state: str
    """``online`` or ``unknown`` (leaving is ``Left``)."""
    failures: int
    at: float


@dataclass(frozen=True)
class StatusReceived:
    device_id: int
    data: dict[str, Any]
    """The upload's ``data`` as the device sent it (strict JSON)."""
    utilisation: Utilisation
    """The percentages derived from it, every number checked."""
    at: float


@dataclass(frozen=True)
class StatusRejected:
    """A status upload that was not taken (not an object, another device's id)."""

    device_id: int
    reason: str


@dataclass(frozen=True)
class FrameIgnored:
    """A frame the protocol says to ignore and count; ``reason`` is the label."""

    device_id: int
    reason: str


@dataclass(frozen=True)
class Left:
    """The device's session on this instance ended."""

    device_id: int
    cause: str
    at: float


@dataclass(frozen=True)
class Reattached:
    """This instance had been taken for lost by the others, which released its
    sessions; the session is still here and is recorded again."""

    device_id: int
    state: str
    peer: str
    at: float


@dataclass(frozen=True)
class Released:
    """Another instance died and its session of this device was released here."""

    device_id: int
    namespace: str
    resource: str | None


# --- commands --------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandSent:
    device_id: int
    order: str


VERSION_MAX = 64
"""Longest ``business_version`` the devices table and a Device's status hold."""


@dataclass(frozen=True)
class CommandFinished:
    device_id: int
    order: str
    result: CommandResult
    seconds: float

    def installed_version(self) -> str | None:
        """The version a successful ``update`` reports (section 9: ``data.version``),
        when it is one the devices table can hold; None for anything else."""
        if self.order != UPDATE or self.result.status != "success":
            return None
        data = self.result.data
        version = data.get("version") if isinstance(data, dict) else None
        if isinstance(version, str) and 0 < len(version) <= VERSION_MAX and version.isprintable():
            return version
        return None


@dataclass(frozen=True)
class CommandNotSent:
    device_id: int
    order: str
    refusal: str
    """``offline``, ``unknown`` or ``busy``."""


# --- desired configuration (section 8) ---------------------------------------------------


@dataclass(frozen=True)
class ConfigReported:
    """A logged-in device said what configuration it runs (``config_report``)."""

    device_id: int
    report: ConfigReport
    at: float


@dataclass(frozen=True)
class ConfigSynced:
    """A device's report was stored: the version it runs, and whether that is its
    desired configuration (None: it cannot take one). Announced in Kubernetes mode,
    for the Device's status."""

    device_id: int
    version: int | None
    in_sync: bool | None


# --- data (section 7) --------------------------------------------------------------------


@dataclass(frozen=True)
class DataReceived:
    """A batch of records from a logged-in device over its WebSocket, checked by the
    session record by record. ``answer(data, message=None)`` sends the
    ``upload_data_result`` back through the device's session (``message``: the batch
    failed as a whole, e.g. ``server busy``)."""

    device_id: int
    request_id: str | None
    records: tuple[Record, ...]
    rejected: tuple[tuple[str, str], ...]
    """(record_id, reason) of the records that failed the protocol's checks."""
    host: str
    answer: Callable[..., Awaitable[None]]
    at: float


@dataclass(frozen=True)
class DataIngested:
    """A batch of records was stored, or not at all (``failed``: its records, the
    database being away), over the WebSocket or HTTP (``transport``: ``ws``, ``http``)."""

    device_id: int | None
    transport: str
    accepted: int
    duplicates: int
    rejected: int
    bytes: int
    failed: int


@dataclass(frozen=True)
class FileReceived:
    """A ``HEAD`` or ``PUT /files/{sha256}`` was answered: ``result`` is ``present``
    or ``missing`` (HEAD), ``stored``, ``exists``, ``mismatch``, ``too_big`` (PUT)."""

    device_id: int
    result: str
    bytes: int


@dataclass(frozen=True)
class ArtifactDownloadStarted:
    """A device asked for an artifact it may download (``GET /files/{sha256}``);
    ``resumed``: for a part of it (``Range``), after a broken download."""

    device_id: int
    resumed: bool


@dataclass(frozen=True)
class ArtifactDownloadEnded:
    """That download ended: ``completed`` (every byte asked for was sent),
    ``broken`` (the connection went first) or ``refused`` (416: a range beyond the
    file); ``bytes`` were sent either way."""

    device_id: int
    result: str
    bytes: int


E = TypeVar("E")


class SessionEvents:
    """Routes each event to the callbacks subscribed to its type."""

    def __init__(self) -> None:
        self._callbacks: dict[type, list[Callable[[Any], None]]] = defaultdict(list)

    def on(self, event_type: type[E], callback: Callable[[E], None]) -> None:
        self._callbacks[event_type].append(callback)

    def publish(self, event: object) -> None:
        for callback in self._callbacks.get(type(event), ()):
            try:
                callback(event)
            except Exception:  # one listener's bug must not end a device's session
                log.exception("session event listener failed", extra={"event": repr(event)})
