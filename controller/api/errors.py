"""The failure half of the envelope: ``{"status": "fail", "type": …, "message": …}``.

Handlers raise; ``error_middleware`` in ``app.py`` turns every exception into one of
these, so no handler formats an error by hand.
"""

from __future__ import annotations

from enum import StrEnum

from edgefleet.agent.protocol import CommandRefused
from edgefleet.controller import store


class ErrorType(StrEnum):
    GENERAL_ERROR = "GENERAL_ERROR"
    AUTH_ERROR = "AUTH_ERROR"
    DEVICEOP_ERROR = "DEVICEOP_ERROR"
    GROUPOP_ERROR = "GROUPOP_ERROR"
    RELATIONOP_ERROR = "RELATIONOP_ERROR"
    DEVICE_OFFLINE = "DEVICE_OFFLINE"
    DEVICE_BUSY = "DEVICE_BUSY"
    COMMAND_TIMEOUT = "COMMAND_TIMEOUT"
    RECORD_ERROR = "RECORD_ERROR"
    CLASSIFIER_ERROR = "CLASSIFIER_ERROR"
    ANALYSIS_OFF = "ANALYSIS_OFF"
    DATABASE_ERROR = "DATABASE_ERROR"
    INNER_ERROR = "INNER_ERROR"


class ApiError(Exception):
    """An answer other than success, with its HTTP status."""

    def __init__(self, status: int, type: ErrorType, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message

    def body(self) -> dict[str, str]:
        return {"status": "fail", "type": self.type.value, "message": self.message}


def bad_request(message: str) -> ApiError:
    return ApiError(400, ErrorType.GENERAL_ERROR, message)


def from_refusal(exc: CommandRefused) -> ApiError:
    """A device that cannot take a command (or has no live status) now: 409."""
    error_type = ErrorType.DEVICE_BUSY if exc.kind == "busy" else ErrorType.DEVICE_OFFLINE
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
        case store.MembershipNotFound():
            group_id, device_id = exc.args
            return ApiError(
                404,
                ErrorType.RELATIONOP_ERROR,
                f"device {device_id} is not a member of group {group_id}",
            )
    return ApiError(500, ErrorType.INNER_ERROR, "internal error")
