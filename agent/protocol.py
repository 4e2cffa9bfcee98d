"""The device wire protocol (``shared/PROTOCOL.md``), defined once for both sides.

Devices in the field speak version 1; everything here that goes beyond it is an
extension a version-1 device may ignore (``Headers.request_id``, the token login,
the extra keys of a login success). Field names are exact, capitals included.

Only the standard library is imported: this module is installed on devices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_FRAME_BYTES = 64 * 1024

PING_PONG = "ping_pong"
STATUS_UPLOAD = "upload_status_info"
STATUS_RESPONSE = "send_statusInfo_response"
ORDER = "give_order"
RESULT = "upload_instruction_result"
RESTART_CONFIRM = "restart_confirm"

BUILTIN_ORDERS = ("restart", "upload_log")
RESTART_WAIT_MESSAGE = "wait Server Confirm"
UNKNOWN_ORDER_MESSAGE = "order not in config"
DEFAULT_REMOTE_DIR = "/var/log/devices_management"


class LoginRefused(Exception):
    """Why a login frame cannot be accepted; ``str(exc)`` is the message the device sees."""


# The failure messages of PROTOCOL.md, one per case.
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


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


# --- login ----------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    """A login frame: an identity (id, or serial number and model) and a secret."""

    device_id: str | None = None
    device_sn: str | None = None
    device_model: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    def encode(self) -> str:
        keys = ("device_id", "device_sn", "device_model", "password", "token")
        return encode({k: getattr(self, k) for k in keys if getattr(self, k) is not None})


def parse_login(text: str | bytes) -> Login:
    """Read the first frame of a connection, or raise ``LoginRefused``."""
    try:
        frame = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LoginRefused(MSG_NOT_JSON) from exc
    if not isinstance(frame, dict):
        raise LoginRefused(MSG_NOT_JSON)

    def text_field(name: str) -> str | None:
        value = frame.get(name)
        return value if isinstance(value, str) and value else None

    login = Login(
        device_id=text_field("device_id"),
        device_sn=text_field("device_sn"),
        device_model=text_field("device_model"),
        password=text_field("password"),
        token=text_field("token"),
    )
    if login.password is None and login.token is None:
        raise LoginRefused(MSG_NO_SECRET)
    if login.device_id is None and (login.device_sn is None or login.device_model is None):
        raise LoginRefused(MSG_NO_IDENTITY)
    if login.token is not None and login.password is None and login.device_id is None:
        raise LoginRefused(MSG_NO_IDENTITY)  # a token is bound to a device id
    return login


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


def parse_login_answer(text: str | bytes) -> LoginAnswer:
    """Read the first frame the server sends; a malformed one is a failed login.

    The extension keys are taken only when they have the right type, so a server
    that sends something odd degrades to a version-1 login rather than an error.
    """
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError):
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
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
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


def order(
    device_id: str,
    order_type: str,
    params: dict[str, Any] | None = None,
    request_id: str | None = None,
    remote_dir: str | None = None,
) -> str:
    """A ``give_order`` frame: built-ins carry no params, custom commands always do."""
    inner = order_type in BUILTIN_ORDERS
    headers: dict[str, Any] = {"isInner": inner, "order_type": order_type}
    if request_id is not None:
        headers["request_id"] = request_id
    data: dict[str, Any] = {"device_id": device_id}
    if order_type == "upload_log":
        data["remote_dir"] = remote_dir or DEFAULT_REMOTE_DIR
    if not inner:
        data["params"] = params or {}
    return _frame(ORDER, data, headers)


def command_result(
    status: str, message: str, data: Any = None, request_id: str | None = None
) -> str:
    headers: dict[str, Any] = {"message": message}
    if request_id is not None:
        headers["request_id"] = request_id
    return encode(
        {"type": RESULT, "status": status, "Headers": headers, "data": {} if data is None else data}
    )
