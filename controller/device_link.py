"""What the northbound needs from whoever holds the device sessions.

In ``edgefleet serve`` the southbound runs in the same process and is reached
directly (``controller.serve.InProcessLink``); in Kubernetes mode the southbound
pod holding a session is reached over HTTP (``controller.http_link``); without a
southbound there is no link and every device is offline. Commands use the
contract of ``agent.protocol``: a ``CommandResult``, or ``CommandRefused``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from edgefleet.agent.protocol import CommandRefused, CommandResult


@dataclass(frozen=True)
class LiveView:
    """A connected device's live status (the southbound's ``LiveEntry.view()``)."""

    device_id: int
    state: str
    last_seen: float
    cpu_percent: float | None
    memory_used_percent: float | None
    disk_used_percent: float | None
    latest: dict[str, Any]


@dataclass(frozen=True)
class StatusSample:
    """One kept point of a connected device's last hour (``southbound.status_history``)."""

    at: float
    cpu_percent: float | None
    memory_used_percent: float | None
    disk_used_percent: float | None


class DeviceLink(Protocol):
    async def status(self, device_id: int) -> LiveView:
        """Raises ``CommandRefused("offline")`` when no session holds the device."""

    async def status_history(self, device_id: int, since: float) -> list[StatusSample]:
        """The samples kept since ``since`` (epoch seconds), oldest first; raises
        ``CommandRefused("offline")`` when no session holds the device."""

    async def command(
        self, device_id: int, order: str, params: dict[str, Any], timeout: float
    ) -> CommandResult:
        """Send a command and wait for its result; raises ``CommandRefused``."""

    async def disconnect(self, device_id: int, reason: str) -> None:
        """End the device's session, if it has one (it was disabled or deleted)."""

    async def push_config(self, device_ids: list[int]) -> None:
        """Have the connected ones among these devices sent their effective
        configuration (soon, spread over time); the others get it at login."""

    async def deliver_queued(self, device_id: int) -> None:
        """Have the device's queued commands delivered now, if it is connected;
        else they wait for its next login."""


class NoDeviceLink:
    """No southbound attached: no device holds a session."""

    async def status(self, device_id: int) -> LiveView:
        raise CommandRefused("offline")

    async def status_history(self, device_id: int, since: float) -> list[StatusSample]:
        raise CommandRefused("offline")

    async def command(
        self, device_id: int, order: str, params: dict[str, Any], timeout: float
    ) -> CommandResult:
        raise CommandRefused("offline")

    async def disconnect(self, device_id: int, reason: str) -> None:
        return None

    async def push_config(self, device_ids: list[int]) -> None:
        return None

    async def deliver_queued(self, device_id: int) -> None:
        return None
