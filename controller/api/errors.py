"""The failure half of the envelope: ``{"status": "fail", "type": …, "message": …}``.

Handlers raise; ``error_middleware`` in ``app.py`` turns every exception into one of
these, so no handler formats an error by hand.
"""

from __future__ import annotations

from enum import StrEnum

from edgefleet.agent.protocol import CommandRefused
from edgefleet.controller import store
from edgefleet.controller.access.accounts import WrongPassword
from edgefleet.controller.access.principal import AccessDenied
from edgefleet.controller.access.sign_in import RegistrationClosed, SignInThrottled
from edgefleet.controller.access.tokens import InvalidToken
from edgefleet.controller.commands import BadCommand


class ErrorType(StrEnum):
    GENERAL_ERROR = "GENERAL_ERROR"
    AUTH_ERROR = "AUTH_ERROR"
    DEVICEOP_ERROR = "DEVICEOP_ERROR"
    GROUPOP_ERROR = "GROUPOP_ERROR"
    RELATIONOP_ERROR = "RELATIONOP_ERROR"
    USEROP_ERROR = "USEROP_ERROR"
    ROLEOP_ERROR = "ROLEOP_ERROR"
    KEYOP_ERROR = "KEYOP_ERROR"
    DEVICE_OFFLINE = "DEVICE_OFFLINE"
    DEVICE_BUSY = "DEVICE_BUSY"
    DEVICE_UNSUPPORTED = "DEVICE_UNSUPPORTED"
    ARTIFACT_ERROR = "ARTIFACT_ERROR"
    COMMAND_TIMEOUT = "COMMAND_TIMEOUT"
    COMMAND_ERROR = "COMMAND_ERROR"
    CONFIG_ERROR = "CONFIG_ERROR"
    RECORD_ERROR = "RECORD_ERROR"
    CLASSIFIER_ERROR = "CLASSIFIER_ERROR"
    ANALYSIS_OFF = "ANALYSIS_OFF"
    DATABASE_ERROR = "DATABASE_ERROR"
    INNER_ERROR = "INNER_ERROR"


class ApiError(Exception):
    """An answer other than success, with its HTTP status."""

    def __init__(
        self, status: int, type: ErrorType, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"status": "fail", "type": self.type.value, "message": self.message}


def bad_request(message: str) -> ApiError:
    return ApiError(400, ErrorType.GENERAL_ERROR, message)


def from_refusal(exc: CommandRefused) -> ApiError:
    """A device that cannot take a command (or has no live status) now: 409."""
    error_type = {
        "busy": ErrorType.DEVICE_BUSY,
        "unsupported": ErrorType.DEVICE_UNSUPPORTED,
    }.get(exc.kind, ErrorType.DEVICE_OFFLINE)
    return ApiError(409, error_type, str(exc))


def from_store_error(exc: store.StoreError) -> ApiError:
    """The one mapping from store exceptions to REST answers."""
    match exc:
        case store.KubernetesUnavailable():
            return ApiError(
                503, ErrorType.DATABASE_ERROR, "Kubernetes API unavailable, try again later"
            )
        case store.DatabaseUnavailable():
            return ApiError(503, ErrorType.DATABASE_ERROR, "database unavailable, try again later")
        case store.DeviceNotFound():
            return ApiError(404, ErrorType.DEVICEOP_ERROR, f"device {exc.args[0]} not found")
        case store.DeviceConflict():
            return ApiError(409, ErrorType.DEVICEOP_ERROR, str(exc))
        case store.GroupNotFound():
            return ApiError(404, ErrorType.GROUPOP_ERROR, f"group {exc.args[0]} not found")
        case store.GroupConflict():
            return ApiError(409, ErrorType.GROUPOP_ERROR, str(exc))
        case store.RecordNotFound():
            return ApiError(404, ErrorType.RECORD_ERROR, f"record {exc.args[0]} not found")
        case store.FileNotFound():
            return ApiError(404, ErrorType.RECORD_ERROR, f"file {exc.args[0]} not found")
        case store.ArtifactNotFound():
            return ApiError(404, ErrorType.ARTIFACT_ERROR, f"artifact {exc.args[0]} not found")
        case store.ArtifactConflict():
            return ApiError(409, ErrorType.ARTIFACT_ERROR, str(exc))
        case store.MembershipNotFound():
            group_id, device_id = exc.args
            return ApiError(
                404,
                ErrorType.RELATIONOP_ERROR,
                f"device {device_id} is not a member of group {group_id}",
            )
        case store.DynamicMembership():
            group_id, device_id = exc.args
            return ApiError(
                409,
                ErrorType.RELATIONOP_ERROR,
                f"device {device_id} matches the selector of group {group_id}: that "
                "membership follows the device's labels and cannot be changed by hand",
            )
        case store.UserNotFound():
            return ApiError(404, ErrorType.USEROP_ERROR, f"user {exc.args[0]} not found")
        case store.UserConflict() | store.LastAdmin():
            return ApiError(409, ErrorType.USEROP_ERROR, str(exc))
        case store.RoleNotFound():
            return ApiError(404, ErrorType.ROLEOP_ERROR, f"role {exc.args[0]} not found")
        case store.RoleConflict():
            return ApiError(409, ErrorType.ROLEOP_ERROR, str(exc))
        case store.CommandNotFound():
            return ApiError(404, ErrorType.COMMAND_ERROR, f"command {exc.args[0]} not found")
        case store.JobNotFound():
            return ApiError(404, ErrorType.COMMAND_ERROR, f"job {exc.args[0]} not found")
        case store.JobStateConflict():
            return ApiError(409, ErrorType.COMMAND_ERROR, str(exc))
        case store.CommandNotQueued():
            return ApiError(409, ErrorType.COMMAND_ERROR, str(exc))
        case store.VersionMismatch():
            return ApiError(412, ErrorType.CONFIG_ERROR, f"If-Match: {exc}")
        case store.DocumentTooBig():
            return bad_request(f"body field 'config': {exc}")
        case store.ApiKeyNotFound():
            return ApiError(404, ErrorType.KEYOP_ERROR, f"API key {exc.args[0]} not found")
    return ApiError(500, ErrorType.INNER_ERROR, "internal error")


def forbidden(exc: AccessDenied) -> ApiError:
    """403 names the permission the caller lacks."""
    return ApiError(403, ErrorType.AUTH_ERROR, str(exc))


def as_api_error(exc: BaseException) -> ApiError:
    """Any exception as the envelope answers it (the unexpected ones: 500)."""
    match exc:
        case ApiError():
            return exc
        case CommandRefused():
            return from_refusal(exc)
        case BadCommand():
            error_type = (
                ErrorType.GENERAL_ERROR if exc.status == 400 else ErrorType.DEVICE_UNSUPPORTED
            )
            return ApiError(exc.status, error_type, str(exc))
        case store.StoreError():
            return from_store_error(exc)
        case AccessDenied():
            return forbidden(exc)
        case InvalidToken():
            return ApiError(401, ErrorType.AUTH_ERROR, str(exc))
        case SignInThrottled():
            retry = str(max(1, round(exc.retry_after)))
            return ApiError(429, ErrorType.AUTH_ERROR, str(exc), {"Retry-After": retry})
        case RegistrationClosed() | WrongPassword():
            return ApiError(403, ErrorType.AUTH_ERROR, str(exc))
    return ApiError(500, ErrorType.INNER_ERROR, "internal error")


KNOWN = (
    ApiError,
    CommandRefused,
    BadCommand,
    store.StoreError,
    AccessDenied,
    InvalidToken,
    SignInThrottled,
    RegistrationClosed,
    WrongPassword,
)
"""The exceptions that are answers, not bugs."""


def describe_failure(exc: BaseException) -> tuple[str, int]:
    """(error type, HTTP status) of a failed change, for its audit entry."""
    error = as_api_error(exc)
    return error.type.value, error.status
