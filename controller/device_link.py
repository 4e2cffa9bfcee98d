"""What the northbound needs from whoever holds the device sessions.

In ``edgefleet serve`` the southbound runs in the same process and is the link;
without a southbound there is no link and every device is offline. (The
Kubernetes mode will reach the southbound pod holding a session over HTTP.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class DeviceUnavailable(Exception):
    """The device cannot be reached now: ``kind`` is ``offline``, ``unknown`` or ``busy``."""

    MESSAGES = {  # noqa: RUF012 - read-only table
        "offline": "Device is offline!",
        "unknown": "Device state is Unknown!",
        "busy": "Device busy!",
    }

    def __init__(self, kind: str) -> None:
        super().__init__(self.MESSAGES[kind])
        self.kind = kind


@dataclass(frozen=True)
class LiveView:
    device_id: int
    state: str
    last_seen: float
    cpu_percent: float | None
    memory_used_percent: float | None
    disk_used_percent: float | None
    latest: dict[str, Any]


@dataclass(frozen=True)
class CommandOutcome:
    status: str  # "success", "fail" or "timeout"
    message: str
    data: Any = None


class DeviceLink(Protocol):
    async def status(self, device_id: int) -> LiveView: ...

    async def command(
        self, device_id: int, order: str, params: dict[str, Any], timeout: float
    ) -> CommandOutcome: ...

    async def disconnect(self, device_id: int, reason: str) -> None:
        """End the device's session, if it has one (it was disabled or deleted)."""


class NoDeviceLink:
    """No southbound attached: no device holds a session."""

    async def status(self, device_id: int) -> LiveView:
        raise DeviceUnavailable("offline")

    async def command(
        self, device_id: int, order: str, params: dict[str, Any], timeout: float
    ) -> CommandOutcome:
        raise DeviceUnavailable("offline")

    async def disconnect(self, device_id: int, reason: str) -> None:
        return None
