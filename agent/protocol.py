"""The device wire protocol (``docs/protocol.md``), defined once for both sides.

Devices in the field speak version 1; everything here that goes beyond it is an
extension a version-1 device may ignore (``Headers.request_id``, the token login,
the extra keys of a login success). Field names are exact, capitals included.

Every frame's shape is declared once, as a ``TypedDict`` registered with
``@wire_frame``, next to the function that builds it; ``scripts/protocol_schemas.py``
turns the registry into the JSON Schemas of ``docs/schemas/``, and a test checks
that the frames built here match them. Adding a frame is one more declaration.

Only the standard library is needed: this module is installed on devices.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, NotRequired, TypeVar

try:  # pydantic, which turns the declarations into JSON Schemas, needs this one on 3.11
    from typing_extensions import TypedDict
except ImportError:  # on a device: the standard library's, the same at run time
    from typing import TypedDict

MAX_FRAME_BYTES = 64 * 1024

# --- timings (seconds) ------------------------------------------------------------
# Every interval of the protocol, defined here once; both sides take their
# defaults from these, and the settings of each side may change them.

LOGIN_TIMEOUT = 5.0
"""The login frame must arrive this long after the WebSocket handshake."""
HEARTBEAT_INTERVAL = 5.0
"""A device pings this long after the last frame it sent."""
ANSWER_TIMEOUT = 3.0
"""A ping or a status upload waits this long for its answer."""
STATUS_INTERVAL = 15.0
"""A device uploads its status this often."""
HEARTBEAT_TOLERANCE = 7.5
"""Silence the cloud tolerates while the device has missed no heartbeat..."""
HEARTBEAT_TOLERANCE_AFTER_FAILURE = 5.5
"""...and once it has missed one (the device is then ``unknown``)."""
MAX_FAILURES = 3
"""Missed answers (device side) or silences (cloud side) that end a session."""
RECONNECT_DELAY = 10.0
"""A device waits this long (plus jitter) before reconnecting."""
COMMAND_TIMEOUT = 10.0
"""A command with no result this long after it was sent has timed out."""
RESTART_WAIT = 3.0
"""A restarting device waits this long for the cloud's confirm."""
MAX_FRAMES_PER_SECOND = 20
"""Frames a second the cloud takes from one device; past it they are dropped, and
twice as many close the connection (configurable on the cloud side)."""

PING_PONG = "ping_pong"
STATUS_UPLOAD = "upload_status_info"
STATUS_RESPONSE = "send_statusInfo_response"
ORDER = "give_order"
RESULT = "upload_instruction_result"
RESTART_CONFIRM = "restart_confirm"

BUILTIN_ORDERS = ("restart", "upload_log", "update")
UPDATE = "update"
"""The built-in order of section 9, sent only to a device that listed ``update``."""
RESTART_WAIT_MESSAGE = "wait Server Confirm"
UNKNOWN_ORDER_MESSAGE = "order not in config"
DEFAULT_REMOTE_DIR = "/var/log/devices_management"


class LoginRefused(Exception):
    """Why a login frame cannot be accepted; ``str(exc)`` is the message the device sees."""


# The failure messages of docs/protocol.md, one per case.
MSG_NOT_JSON = "login frame is not valid JSON"
MSG_NO_SECRET = "password or token required"
MSG_NO_IDENTITY = "device_id, or device_sn and device_model, required"
MSG_UNKNOWN_DEVICE = "device not registered"
MSG_WRONG_PASSWORD = "password Not Correct"
MSG_BAD_TOKEN = "token expired or invalid"
MSG_LOGIN_TIMEOUT = "login frame not received in time"
MSG_DISABLED = "device disabled"
MSG_TOO_MANY_LOGINS = "too many login attempts, retry later"
MSG_UNAVAILABLE = "server busy, retry later"

LoginFailureMessage = Literal[
    MSG_NOT_JSON,
    MSG_NO_SECRET,
    MSG_NO_IDENTITY,
    MSG_UNKNOWN_DEVICE,
    MSG_WRONG_PASSWORD,
    MSG_BAD_TOKEN,
    MSG_LOGIN_TIMEOUT,
    MSG_DISABLED,
    MSG_TOO_MANY_LOGINS,
    MSG_UNAVAILABLE,
]

# What a device answers to the built-in commands (section 4).
MSG_ORDER_DONE = "successfully exec order."
MSG_UPLOAD_FAILED = "fail to upload log."


# --- the frames, declared once -------------------------------------------------------

DEVICE = "device"
CLOUD = "cloud"


@dataclass(frozen=True)
class WireFrame:
    """One frame of the protocol: who sends it and its shape (a ``TypedDict``, or a
    union of them where the frame has variants, which says what it is in
    ``description``; a class says it in its docstring)."""

    name: str
    sender: str
    shape: Any
    description: str = ""


WIRE_FRAMES: dict[str, WireFrame] = {}
"""Every frame, by name, in declaration order; the JSON Schemas are made from it."""

_Shape = TypeVar("_Shape")


def wire_frame(name: str, sender: str, description: str = "") -> Callable[[_Shape], _Shape]:
    """Register a frame's shape under ``name``: ``@wire_frame("ping", DEVICE)``."""

    def register(shape: _Shape) -> _Shape:
        WIRE_FRAMES[name] = WireFrame(name, sender, shape, description)
        return shape

    return register


class NoHeaders(TypedDict):
    """``Headers`` of a frame that carries none: ``{}``."""


class NoData(TypedDict):
    """``data`` of a frame that carries none: ``{}``."""


class LoginById(TypedDict):
    """Login of a device that knows its id."""

    device_id: str
    """The id the cloud gave the device at registration: decimal digits, as a string."""
    password: str
    """The device's password (bcrypt-checked by the cloud; at most 72 bytes)."""


class LoginBySerial(TypedDict):
    """Login of a device that does not know its id yet: its serial number and model."""

    device_sn: str
    device_model: str
    password: str


class LoginByToken(TypedDict):
    """Extension: a device that holds a session token logs in with it instead of
    its password (the token is bound to the device id)."""

    device_id: str
    token: str


LoginFrame = wire_frame(
    "login",
    DEVICE,
    "The first frame of every connection, within 5 s of the WebSocket handshake: "
    "an identity (the id, or the serial number and model) and a secret.",
)(LoginById | LoginBySerial | LoginByToken)


class LoginSuccessData(TypedDict):
    device_id: str
    """The device's id (useful to a device that logged in by serial number)."""
    token: NotRequired[str]
    """Extension: a session token to log in with next time instead of the password."""
    token_expires_at: NotRequired[str]
    """Extension: when the token stops working (RFC 3339, UTC)."""
    heartbeat_interval: NotRequired[float]
    """Extension: seconds between heartbeats the cloud expects (default 5)."""
    status_interval: NotRequired[float]
    """Extension: seconds between status uploads the cloud expects (default 15)."""


@wire_frame("login_success", CLOUD)
class LoginSuccess(TypedDict):
    """The login was accepted; the connection stays open."""

    status: Literal["success"]
    data: LoginSuccessData


@wire_frame("login_failure", CLOUD)
class LoginFailure(TypedDict):
    """The login was refused; the cloud closes the connection (1008) after it."""

    status: Literal["fail"]
    message: LoginFailureMessage
    """Why, one message per case."""


@wire_frame("ping", DEVICE)
class Ping(TypedDict):
    """The device's heartbeat."""

    type: Literal[PING_PONG]
    Headers: NoHeaders
    data: Literal["ping"]


@wire_frame("pong", CLOUD)
class Pong(TypedDict):
    """The cloud's answer to a ping."""

    type: Literal[PING_PONG]
    Headers: NoHeaders
    data: Literal["pong"]


class CpuInfo(TypedDict):
    """Cumulative CPU seconds since boot; the cloud derives utilisation from two
    consecutive uploads."""

    user_cpu_time: float
    system_cpu_time: float
    idle_cpu_time: float
    io_wait_cpu_time: float


class MemoryInfo(TypedDict):
    total_memory_mb: float
    free_memory_mb: float
    buff_cache_mb: float


class DiskInfo(TypedDict):
    """The root filesystem (or the one the device chooses to report)."""

    root_total_size_mb: float
    root_used_size_mb: float
    root_used_percent: float


class StatusData(TypedDict):
    device_id: str
    CPU_info: CpuInfo
    Memory_info: MemoryInfo
    Disk_info: DiskInfo
    dev_state: str
    """``online``."""
    extra: NotRequired[dict[str, Any]]
    """Extension: anything more the device reports; the cloud keeps it in the live
    status."""


@wire_frame("status_upload", DEVICE)
class StatusUpload(TypedDict):
    """The device's status, every 15 s; it also counts as a heartbeat."""

    type: Literal[STATUS_UPLOAD]
    Headers: NoHeaders
    data: StatusData


@wire_frame("status_response", CLOUD)
class StatusResponse(TypedDict):
    """The cloud's answer to a status upload."""

    type: Literal[STATUS_RESPONSE]
    Headers: NoHeaders
    data: NoData


class OrderHeaders(TypedDict):
    isInner: bool
    """True for a built-in command (``restart``, ``upload_log``, ``update``), false for
    a custom one."""
    order_type: str
    """The command's name."""
    request_id: NotRequired[str]
    """Extension: echoed in the result's ``Headers`` by a device that supports it."""


class UpdateArtifact(TypedDict):
    """What an ``update`` installs (section 9)."""

    name: str
    version: str
    """The version the device runs once it is installed."""
    sha256: str
    """Lower-case hex SHA-256 of the whole file: the device checks it before installing."""
    size: int
    """Bytes."""
    url: str
    """Where to download it, relative to the ``/ws`` host (``/files/<sha256>``), with
    the device's credentials of section 7; ``Range`` resumes a broken download."""


class OrderData(TypedDict):
    device_id: str
    remote_dir: NotRequired[str]
    """``upload_log`` only: the SFTP folder to upload the log into."""
    artifact: NotRequired[UpdateArtifact]
    """``update`` only (extension ``update``): the package to install."""
    params: NotRequired[dict[str, Any]]
    """Custom commands only, and always there (maybe ``{}``): keyword arguments."""


@wire_frame("order", CLOUD)
class Order(TypedDict):
    """A command for the device."""

    type: Literal[ORDER]
    Headers: OrderHeaders
    data: OrderData


class ResultHeaders(TypedDict):
    message: str
    """What happened, e.g. ``successfully exec order.``, ``wait Server Confirm``,
    ``order not in config``, ``fail to upload log.``."""
    request_id: NotRequired[str]
    """Extension: the command's ``request_id``, echoed."""


@wire_frame("command_result", DEVICE)
class CommandResultFrame(TypedDict):
    """The device's answer to a command."""

    type: Literal[RESULT]
    status: Literal["success", "fail"]
    Headers: ResultHeaders
    data: Any
    """Extension: the command's return value (any JSON); ``{}`` when there is none."""


@wire_frame("restart_confirm", CLOUD)
class RestartConfirm(TypedDict):
    """The cloud's go-ahead after a device answered ``restart`` with
    ``wait Server Confirm``."""

    type: Literal[RESTART_CONFIRM]
    Headers: NoHeaders
    data: NoData


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class NotJson(ValueError):
    """Text that is not strict JSON, or JSON no peer should send."""


MAX_INTEGER_DIGITS = 20
"""Longer integers are refused while parsing: no field of the protocol needs them,
and converting a 400-digit number to a float raises."""


def _refuse_constant(name: str) -> Any:
    raise NotJson(f"{name} is not JSON")


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise NotJson("integer too long")
    return int(text)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJson("number out of range")
    return value


def loads(text: str | bytes) -> Any:
    """Parse one frame as strict JSON: ``NaN`` and ``Infinity`` (which Python's json
    accepts and strict parsers refuse), overlong integers, numbers that overflow and
    nesting deeper than the interpreter's stack all raise ``NotJson``, the one error
    every caller handles, so no malformed frame escapes as another exception."""
    try:
        return json.loads(
            text, parse_constant=_refuse_constant, parse_int=_integer, parse_float=_finite
        )
    except NotJson:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError, TypeError) as exc:
        raise NotJson(type(exc).__name__) from exc


# --- login ----------------------------------------------------------------------


# --- capabilities (section 6) ------------------------------------------------------

EXTENSIONS = frozenset({"token", "request_id", "data", "config", "queue", "update", "metered"})
"""What a device may list in its login frame's ``extensions``. The cloud sends an
extension frame only to a device that listed it; one that lists nothing is a
version-1 device and gets exactly sections 1 to 5. ``metered``: the device is on a
metered link; the login answer then announces longer intervals and a
``status_change_percent``, and the device sends its status only when it moved."""


@dataclass(frozen=True)
class Login:
    """A login frame: an identity (id, or serial number and model), a secret, and
    the extensions the device speaks (none for a version-1 device)."""

    device_id: str | None = None
    device_sn: str | None = None
    device_model: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    extensions: frozenset[str] = frozenset()

    def encode(self) -> str:
        keys = ("device_id", "device_sn", "device_model", "password", "token")
        frame: dict[str, Any] = {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
        if self.extensions:
            frame["extensions"] = sorted(self.extensions)
        return encode(frame)


def parse_login(text: str | bytes) -> Login:
    """Read the first frame of a connection, or raise ``LoginRefused``."""
    try:
        frame = loads(text)
    except NotJson as exc:
        raise LoginRefused(MSG_NOT_JSON) from exc
    if not isinstance(frame, dict):
        raise LoginRefused(MSG_NOT_JSON)

    def text_field(name: str) -> str | None:
        value = frame.get(name)
        return value if _usable_text(value) else None

    listed = frame.get("extensions")
    login = Login(
        device_id=text_field("device_id"),
        device_sn=text_field("device_sn"),
        device_model=text_field("device_model"),
        password=text_field("password"),
        token=text_field("token"),
        # Unknown names (a newer device) and anything but a list of them are ignored.
        extensions=EXTENSIONS.intersection(
            name for name in (listed if isinstance(listed, list) else ()) if isinstance(name, str)
        ),
    )
    if login.password is None and login.token is None:
        raise LoginRefused(MSG_NO_SECRET)
    if login.device_id is None and (login.device_sn is None or login.device_model is None):
        raise LoginRefused(MSG_NO_IDENTITY)
    if login.token is not None and login.password is None and login.device_id is None:
        raise LoginRefused(MSG_NO_IDENTITY)  # a token is bound to a device id
    return login


MAX_LOGIN_FIELD = 1024
"""Longer identities and secrets are refused as if absent."""


def _usable_text(value: Any) -> bool:
    """A non-empty string of sane length that is valid UTF-8 (JSON lets a frame
    carry lone surrogates, which no encoder, hash or database takes)."""
    if not isinstance(value, str) or not value or len(value) > MAX_LOGIN_FIELD:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def login_success(device_id: str, **extensions: Any) -> str:
    return encode({"status": "success", "data": {"device_id": device_id, **extensions}})


def login_failure(message: str) -> str:
    return encode({"status": "fail", "message": message})


@dataclass(frozen=True)
class LoginAnswer:
    """The server's answer to a login frame, as the device reads it."""

    success: bool
    message: str = ""
    device_id: str | None = None
    token: str | None = field(default=None, repr=False)
    token_expires_at: str | None = None
    heartbeat_interval: float | None = None
    status_interval: float | None = None
    status_change_percent: float | None = None
    """Extension ``metered``: upload the status only when a percentage moved this
    much, or when ``status_interval`` has passed since the last upload."""


def parse_login_answer(text: str | bytes) -> LoginAnswer:
    """Read the first frame the server sends; a malformed one is a failed login.

    The extension keys are taken only when they have the right type, so a server
    that sends something odd degrades to a version-1 login rather than an error.
    """
    try:
        raw = loads(text)
    except NotJson:
        return LoginAnswer(False, "login answer is not valid JSON")
    if not isinstance(raw, dict):
        return LoginAnswer(False, "login answer is not a JSON object")
    if raw.get("status") != "success":
        message = raw.get("message")
        return LoginAnswer(False, message if isinstance(message, str) else "login refused")
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    device_id = data.get("device_id")
    if not isinstance(device_id, (str, int)) or isinstance(device_id, bool):
        return LoginAnswer(False, "login answer carries no device_id")

    def text_key(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) and value else None

    def seconds_key(name: str) -> float | None:
        value = data.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
        return None

    return LoginAnswer(
        success=True,
        device_id=str(device_id),
        token=text_key("token"),
        token_expires_at=text_key("token_expires_at"),
        heartbeat_interval=seconds_key("heartbeat_interval"),
        status_interval=seconds_key("status_interval"),
        status_change_percent=seconds_key("status_change_percent"),
    )


# --- frames after login -----------------------------------------------------------


class BadFrame(ValueError):
    """A frame that is not a JSON object with a ``type``: ignored and counted."""


@dataclass(frozen=True)
class Frame:
    type: str
    headers: dict[str, Any]
    data: Any
    status: Any = None

    @property
    def request_id(self) -> str | None:
        value = self.headers.get("request_id")
        return value if isinstance(value, str) else None


def parse_frame(text: str | bytes) -> Frame:
    try:
        raw = loads(text)
    except NotJson as exc:
        raise BadFrame("invalid_json") from exc
    if not isinstance(raw, dict):
        raise BadFrame("not_an_object")
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise BadFrame("no_type")
    headers = raw.get("Headers")
    return Frame(
        type=kind,
        headers=headers if isinstance(headers, dict) else {},
        data=raw.get("data"),
        status=raw.get("status"),
    )


def _frame(kind: str, data: Any, headers: dict[str, Any] | None = None) -> str:
    return encode({"type": kind, "Headers": headers or {}, "data": data})


def ping() -> str:
    return _frame(PING_PONG, "ping")


def pong() -> str:
    return _frame(PING_PONG, "pong")


def status_response() -> str:
    return _frame(STATUS_RESPONSE, {})


def restart_confirm() -> str:
    return _frame(RESTART_CONFIRM, {})


def status_upload(device_id: str, status: dict[str, Any]) -> str:
    """``status`` holds ``CPU_info``, ``Memory_info``, ``Disk_info`` and ``dev_state``."""
    return _frame(STATUS_UPLOAD, {"device_id": device_id, **status})


# --- the status payload (section 3) --------------------------------------------------

CPU_INFO = "CPU_info"
MEMORY_INFO = "Memory_info"
DISK_INFO = "Disk_info"
CPU_TIMES = tuple(CpuInfo.__annotations__)
"""Cumulative CPU seconds, in ``CPU_info``; busy is user + system."""


@dataclass(frozen=True)
class StatusReport:
    """The numbers of one status upload. Missing or unusable values are ``None``."""

    cpu_times: tuple[float, float, float, float] | None = None
    total_memory_mb: float | None = None
    free_memory_mb: float | None = None
    buff_cache_mb: float | None = None
    root_total_size_mb: float | None = None
    root_used_size_mb: float | None = None
    root_used_percent: float | None = None

    def payload(self) -> dict[str, Any]:
        """The ``upload_status_info`` data (without ``device_id``)."""
        cpu = dict(zip(CPU_TIMES, self.cpu_times or (), strict=False))
        return {
            CPU_INFO: cpu,
            MEMORY_INFO: {
                "total_memory_mb": self.total_memory_mb,
                "free_memory_mb": self.free_memory_mb,
                "buff_cache_mb": self.buff_cache_mb,
            },
            DISK_INFO: {
                "root_total_size_mb": self.root_total_size_mb,
                "root_used_size_mb": self.root_used_size_mb,
                "root_used_percent": self.root_used_percent,
            },
            "dev_state": "online",
        }

    # The percentages the cloud shows, derived here once for both sides: the cloud
    # serves them, and a device on a metered link sends its status only when they
    # moved (extension ``metered``).

    def memory_used_percent(self) -> float | None:
        total, free = self.total_memory_mb, self.free_memory_mb
        if not total or free is None:
            return None
        return _percent(total - free - (self.buff_cache_mb or 0.0), total)

    def disk_used_percent(self) -> float | None:
        if self.root_used_percent is not None:
            return self.root_used_percent
        total, used = self.root_total_size_mb, self.root_used_size_mb
        return _percent(used, total) if total and used is not None else None

    def cpu_percent_since(self, earlier: StatusReport) -> float | None:
        """CPU use between ``earlier`` and this report: the busy share (user and
        system) of the CPU seconds that passed in between."""
        if self.cpu_times is None or earlier.cpu_times is None:
            return None
        (user, system, idle, io_wait), before = self.cpu_times, earlier.cpu_times
        busy = user + system - before[0] - before[1]
        total = user + system + idle + io_wait - sum(before)
        return _percent(busy, total) if total > 0 and busy >= 0 else None

    @classmethod
    def read(cls, data: dict[str, Any]) -> StatusReport:
        """The numbers of an upload's ``data``, each checked: a value that is not a
        finite, non-negative number (or a percentage over 100) is taken as missing,
        so nothing a device sends reaches an answer, a resource or a metric unchecked."""
        cpu = data.get(CPU_INFO)
        times = tuple(_quantity(cpu, key) for key in CPU_TIMES)
        memory, disk = data.get(MEMORY_INFO), data.get(DISK_INFO)
        percent = _quantity(disk, "root_used_percent")
        return cls(
            cpu_times=None if None in times else times,  # type: ignore[arg-type]
            total_memory_mb=_quantity(memory, "total_memory_mb"),
            free_memory_mb=_quantity(memory, "free_memory_mb"),
            buff_cache_mb=_quantity(memory, "buff_cache_mb"),
            root_total_size_mb=_quantity(disk, "root_total_size_mb"),
            root_used_size_mb=_quantity(disk, "root_used_size_mb"),
            root_used_percent=percent if percent is None or percent <= 100 else None,
        )


def _percent(part: float, whole: float) -> float:
    return round(max(0.0, min(100.0, part / whole * 100)), 2)


QUANTITY_LIMIT = 2.0**53
"""Larger numbers lose precision as JSON numbers in JavaScript; no device counts
that many seconds or megabytes."""


def _quantity(section: Any, key: str) -> float | None:
    if not isinstance(section, dict):
        return None
    value = section.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if isinstance(value, int) and not -QUANTITY_LIMIT < value < QUANTITY_LIMIT:
        return None
    number = float(value)
    return number if math.isfinite(number) and 0 <= number < QUANTITY_LIMIT else None


def order(
    device_id: str,
    order_type: str,
    params: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> str:
    """A ``give_order`` frame. Built-ins carry no params; ``upload_log`` takes its
    ``remote_dir`` from them. Custom commands always carry their params."""
    params = params or {}
    inner = order_type in BUILTIN_ORDERS
    headers: dict[str, Any] = {"isInner": inner, "order_type": order_type}
    if request_id is not None:
        headers["request_id"] = request_id
    data: dict[str, Any] = {"device_id": device_id}
    if order_type == "upload_log":
        remote_dir = params.get("remote_dir")
        data["remote_dir"] = (
            remote_dir if isinstance(remote_dir, str) and remote_dir else (DEFAULT_REMOTE_DIR)
        )
    if order_type == UPDATE:
        data["artifact"] = params.get("artifact", {})
    if not inner:
        data["params"] = params
    return _frame(ORDER, data, headers)


def read_artifact(raw: Any) -> UpdateArtifact:
    """The ``artifact`` of an ``update`` order, every field checked; raises
    ``ValueError`` naming the one that is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("artifact must be a JSON object")
    for name in ("name", "version", "url"):
        if not isinstance(raw.get(name), str) or not raw[name]:
            raise ValueError(f"artifact.{name} must be a non-empty string")
    if not isinstance(raw.get("sha256"), str) or not _SHA256.match(raw["sha256"]):
        raise ValueError("artifact.sha256 must be a lower-case SHA-256 hex digest")
    size = raw.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError("artifact.size must be a whole number of bytes")
    if not raw["url"].startswith("/"):
        raise ValueError("artifact.url must be a path on the /ws host")
    return UpdateArtifact(
        name=raw["name"], version=raw["version"], sha256=raw["sha256"], size=size, url=raw["url"]
    )


def artifact_url(sha256: str) -> str:
    """Where a device downloads an artifact on the device port."""
    return f"/files/{sha256}"


# --- the command contract -------------------------------------------------------------
# One shape for what became of a command, from the device's result frame to the
# REST answer; both sides and the controller import it from here.


@dataclass(frozen=True)
class CommandResult:
    """A command's outcome: the device's answer, or the cloud giving up on it."""

    status: str
    """``success`` or ``fail`` as the device answered; ``timeout`` when it did not in time."""
    message: str
    data: Any = None
    """The command's return value (extension), any JSON."""


class CommandRefused(Exception):
    """A command that cannot be sent now; ``kind`` is ``offline``, ``unknown`` or
    ``busy``, and the message is the one docs/protocol.md section 4 gives the caller;
    ``unsupported``: an ``update`` to a device that did not list the extension."""

    MESSAGES: Mapping[str, str] = MappingProxyType(
        {
            "offline": "Device is offline!",
            "unknown": "Device state is Unknown!",
            "busy": "Device busy!",
            "unsupported": "Device does not support updates!",
        }
    )

    def __init__(self, kind: str) -> None:
        super().__init__(self.MESSAGES[kind])
        self.kind = kind


def command_result(
    status: str, message: str, data: Any = None, request_id: str | None = None
) -> str:
    headers: dict[str, Any] = {"message": message}
    if request_id is not None:
        headers["request_id"] = request_id
    return encode(
        {"type": RESULT, "status": status, "Headers": headers, "data": {} if data is None else data}
    )


# --- data upload (section 7, extension ``data``) ---------------------------------------

UPLOAD_DATA = "upload_data"
UPLOAD_DATA_RESULT = "upload_data_result"
DATA_BUSY_MESSAGE = "server busy"
"""``Headers.message`` of an ``upload_data_result`` that stored nothing because the
cloud's database is away; the device keeps the batch and retries later."""

KIND_PATTERN = r"^[a-z0-9_.-]{1,64}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
MAX_RECORD_ID = 128
"""Longest ``record_id``, in characters."""
MAX_FILES_PER_RECORD = 16
MAX_RECORD_BYTES = 60 * 1024
"""Largest record (its JSON): one must fit in a frame with the envelope around it."""
EARLIEST = datetime(1970, 1, 1)
"""``at`` before this is refused (a device clock never set reads 1970, not year 1)."""
MAX_FILE_BYTES = 10 * 1024 * 1024
"""The cloud's default size limit of one file (configurable on its side)."""

_KIND = re.compile(KIND_PATTERN)
_SHA256 = re.compile(SHA256_PATTERN)


class DataRecord(TypedDict):
    """One record: an id the device chooses (unique per device), a kind, the device's
    time, a JSON object, and the SHA-256 digests of its files."""

    record_id: str
    """Unique per device, 1 to 128 characters; resending the same id stores nothing twice."""
    kind: str
    """1 to 64 characters of ``[a-z0-9_.-]``, e.g. ``alert``."""
    at: str
    """When it happened, RFC 3339, by the device's clock."""
    payload: dict[str, Any]
    """Any JSON object."""
    files: NotRequired[list[str]]
    """SHA-256 hex digests (lower case) of files that belong to the record."""


class RecordsData(TypedDict):
    records: list[DataRecord]


class RequestHeaders(TypedDict):
    request_id: NotRequired[str]
    """Copied into the answer's ``Headers``."""


@wire_frame("upload_data", DEVICE)
class UploadData(TypedDict):
    """Extension ``data``: a batch of records (the whole frame under the frame limit)."""

    type: Literal[UPLOAD_DATA]
    Headers: RequestHeaders
    data: RecordsData


class Rejection(TypedDict):
    record_id: str
    """The record's id as sent (``""`` when it had none that could be read)."""
    message: str
    """Why it was not stored."""


class DataAnswer(TypedDict):
    """What became of each record of a batch; also the answer of ``POST /records``."""

    accepted: list[str]
    """Stored now."""
    duplicates: list[str]
    """Stored before (the same ``record_id``): nothing was stored twice."""
    rejected: list[Rejection]
    """Malformed: not stored, and never will be as they are."""
    missing_files: list[str]
    """Digests the records name that the cloud does not have yet: upload exactly those."""


class DataResultHeaders(TypedDict):
    request_id: NotRequired[str]
    """The batch's ``request_id``, echoed."""
    message: NotRequired[str]
    """With ``status: fail``: why (``server busy``)."""


@wire_frame("upload_data_result", CLOUD)
class UploadDataResult(TypedDict):
    """Extension ``data``: the answer to a batch. ``fail`` only when nothing could be
    stored (the device keeps the batch and retries later)."""

    type: Literal[UPLOAD_DATA_RESULT]
    Headers: DataResultHeaders
    status: Literal["success", "fail"]
    data: DataAnswer


@dataclass(frozen=True)
class Record:
    """A record that passed every check of section 7."""

    record_id: str
    kind: str
    at: datetime
    """Naive UTC."""
    payload: dict[str, Any]
    files: tuple[str, ...] = ()
    size: int = 0
    """Bytes of the payload's JSON (as ``encode`` writes it)."""

    def wire(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "record_id": self.record_id,
            "kind": self.kind,
            "at": rfc3339(self.at),
            "payload": self.payload,
        }
        if self.files:
            record["files"] = list(self.files)
        return record


class RecordRejected(ValueError):
    """A record that breaks a rule of section 7; ``str(exc)`` is the reason sent back."""

    def __init__(self, record_id: str, message: str) -> None:
        super().__init__(message)
        self.record_id = record_id
        self.message = message


def rfc3339(at: datetime) -> str:
    """A naive UTC (or aware) time as RFC 3339 in UTC, ``Z``-suffixed."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds") + "Z"


def parse_rfc3339(text: Any) -> datetime | None:
    """An RFC 3339 date-time as naive UTC, or None; a time without an offset is UTC."""
    if not isinstance(text, str) or not 16 <= len(text) <= 40 or text[10:11] not in ("T", "t", " "):
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def read_record(raw: Any) -> Record:
    """Check one record of a batch; raises ``RecordRejected`` with the reason."""
    if not isinstance(raw, dict):
        raise RecordRejected("", "record is not a JSON object")
    record_id = raw.get("record_id")
    if not isinstance(record_id, str) or not 1 <= len(record_id) <= MAX_RECORD_ID:
        shown = record_id if isinstance(record_id, str) else ""
        raise RecordRejected(shown[:MAX_RECORD_ID], "record_id must be 1 to 128 characters")
    if not _usable_text(record_id):
        raise RecordRejected("", "record_id must be valid UTF-8 text")
    if not record_id.isprintable() or record_id.endswith(" "):
        # MySQL compares strings ignoring trailing spaces: "a" and "a " cannot be two ids.
        raise RecordRejected(record_id, "record_id must be printable text, no trailing space")
    kind = raw.get("kind")
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise RecordRejected(record_id, "kind must be 1 to 64 characters of [a-z0-9_.-]")
    at = parse_rfc3339(raw.get("at"))
    if at is None or at < EARLIEST:
        raise RecordRejected(record_id, "at must be an RFC 3339 date-time from 1970 on")
    payload = raw.get("payload")
    if not isinstance(payload, dict):
        raise RecordRejected(record_id, "payload must be a JSON object")
    try:
        size = len(encode(payload).encode())
    except (ValueError, UnicodeEncodeError) as exc:
        raise RecordRejected(record_id, "payload is not valid UTF-8 JSON") from exc
    if size > MAX_RECORD_BYTES:
        raise RecordRejected(record_id, f"payload over {MAX_RECORD_BYTES} bytes")
    files = raw.get("files", [])
    if not isinstance(files, list) or not all(
        isinstance(f, str) and _SHA256.match(f) for f in files
    ):
        raise RecordRejected(record_id, "files must be a list of lower-case SHA-256 hex digests")
    if len(files) > MAX_FILES_PER_RECORD:
        raise RecordRejected(record_id, f"at most {MAX_FILES_PER_RECORD} files a record")
    return Record(record_id, kind, at, payload, tuple(dict.fromkeys(files)), size)


def read_batch(data: Any) -> tuple[list[Record], list[tuple[str, str]]]:
    """The records of a batch (``{"records": [...]}``), each checked on its own:
    (the good ones, (record_id, reason) of the rejected ones). A record id sent
    twice in one batch is stored once."""
    raw = data.get("records") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        return [], [("", "data.records must be a list of records")]
    records: dict[str, Record] = {}
    rejected: list[tuple[str, str]] = []
    for item in raw:
        try:
            record = read_record(item)
        except RecordRejected as exc:
            rejected.append((exc.record_id, exc.message))
            continue
        records.setdefault(record.record_id, record)
    return list(records.values()), rejected


def upload_data(records: list[dict[str, Any]], request_id: str | None = None) -> str:
    headers = {"request_id": request_id} if request_id is not None else {}
    return _frame(UPLOAD_DATA, {"records": records}, headers)


def data_answer(
    accepted: list[str] | None = None,
    duplicates: list[str] | None = None,
    rejected: list[tuple[str, str]] | None = None,
    missing_files: list[str] | None = None,
) -> dict[str, Any]:
    """The ``data`` of an ``upload_data_result`` (and the body of ``POST /records``)."""
    return {
        "accepted": accepted or [],
        "duplicates": duplicates or [],
        "rejected": [{"record_id": r, "message": m} for r, m in rejected or []],
        "missing_files": missing_files or [],
    }


def upload_data_result(
    answer: dict[str, Any], request_id: str | None = None, message: str | None = None
) -> str:
    """``message`` set: the batch failed as a whole (``server busy``)."""
    return _answer(UPLOAD_DATA_RESULT, answer, request_id, message)


def _answer(kind: str, data: Any, request_id: str | None, message: str | None) -> str:
    """An answer frame with a ``status``: ``fail`` when it carries a ``message``."""
    headers: dict[str, Any] = {}
    if request_id is not None:
        headers["request_id"] = request_id
    if message is not None:
        headers["message"] = message
    status = "fail" if message is not None else "success"
    return encode({"type": kind, "Headers": headers, "status": status, "data": data})


# --- desired configuration (section 8, extension ``config``) ------------------------------

CONFIG_UPDATE = "config_update"
CONFIG_REPORT = "config_report"


class ConfigUpdateData(TypedDict):
    version: int
    """Names this configuration; the device echoes it in its report."""
    config: dict[str, Any]
    """The whole configuration the device should run (not a patch)."""


@wire_frame("config_update", CLOUD)
class ConfigUpdate(TypedDict):
    """Extension ``config``: the configuration the device should run, sent at login
    and whenever it changes."""

    type: Literal[CONFIG_UPDATE]
    Headers: RequestHeaders
    data: ConfigUpdateData


class ConfigReportData(TypedDict):
    version: NotRequired[int]
    """The version the device now runs (of the update it answers, or its last applied)."""
    reported: Any
    """What the device now runs, as it sees it (any JSON)."""


class ConfigReportHeaders(TypedDict):
    request_id: NotRequired[str]
    """The update's ``request_id``; absent from a report the device sends by itself."""
    message: NotRequired[str]
    """With ``status: fail``: why the configuration could not be applied."""


@wire_frame("config_report", DEVICE)
class ConfigReportFrame(TypedDict):
    """Extension ``config``: what the device runs, after an update (``fail``: it could
    not apply it, and runs what it ran before) or whenever it changed by itself."""

    type: Literal[CONFIG_REPORT]
    Headers: ConfigReportHeaders
    status: Literal["success", "fail"]
    data: ConfigReportData


MAX_CONFIG_MESSAGE = 1024


@dataclass(frozen=True)
class ConfigReport:
    """A ``config_report`` as the cloud reads it; anything malformed is made safe,
    never refused: the report is the device's word about itself."""

    version: int | None
    reported: Any
    status: str
    """``success`` or ``fail``."""
    message: str | None
    request_id: str | None

    @classmethod
    def read(cls, frame: Frame) -> ConfigReport:
        data = frame.data if isinstance(frame.data, dict) else {}
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version < 2**31:
            version = None
        message = frame.headers.get("message")
        return cls(
            version=version,
            reported=data.get("reported"),
            status="success" if frame.status == "success" else "fail",
            message=message[:MAX_CONFIG_MESSAGE] if isinstance(message, str) else None,
            request_id=frame.request_id,
        )


def config_update(version: int, config: dict[str, Any], request_id: str | None = None) -> str:
    headers = {"request_id": request_id} if request_id is not None else {}
    return _frame(CONFIG_UPDATE, {"version": version, "config": config}, headers)


def config_report(
    version: int | None,
    reported: Any,
    message: str | None = None,
    request_id: str | None = None,
) -> str:
    """``message`` set: the update failed, and ``reported`` is what still runs."""
    data: dict[str, Any] = {"reported": reported}
    if version is not None:
        data["version"] = version
    return _answer(CONFIG_REPORT, data, request_id, message)
