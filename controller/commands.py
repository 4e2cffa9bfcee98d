"""The one path commands take from the northbound to the devices.

A command to one device goes to its session through the device link and comes
back as a ``CommandResult`` (or ``CommandRefused`` when the device cannot take
it now). A command to a group fans out to every member at once; a member that
cannot take it is one more result, not a failure of the whole. Queued commands
and jobs will start from here too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from edgefleet.agent.protocol import CommandRefused, CommandResult
from edgefleet.controller.device_link import DeviceLink
from edgefleet.controller.store import DatabaseUnavailable, DeviceFilter, Store


class CommandService:
    def __init__(self, store: Store, link: DeviceLink, default_timeout: float) -> None:
        self._store = store
        self._link = link
        self.default_timeout = default_timeout

    async def send(
        self, device_id: int, order: str, params: dict[str, Any], timeout: float | None = None
    ) -> CommandResult:
        """Send and wait for the result (``timeout`` seconds at most, else the
        default); raises ``CommandRefused``, and ``DeviceNotFound`` for no such device.

        With the database away, a device whose session is held where the link
        reaches it without the database (``edgefleet serve``) still gets its
        command: its session is proof enough that it exists."""
        seconds = timeout or self.default_timeout
        try:
            await self._store.devices.get(device_id)
        except DatabaseUnavailable as outage:
            try:
                return await self._link.command(device_id, order, params, seconds)
            except CommandRefused as refused:
                if refused.kind == "offline":  # or no such device: cannot tell which
                    raise outage from None
                raise
        return await self._link.command(device_id, order, params, seconds)

    async def send_to_group(
        self, group_id: int, order: str, params: dict[str, Any], timeout: float | None = None
    ) -> list[tuple[int, CommandResult]]:
        """Every member's result, all sent at once; raises ``GroupNotFound``."""
        group = await self._store.groups.get(group_id)
        rows, _ = await self._store.devices.list(
            DeviceFilter(group_id=group_id), page=1, per_page=max(1, group["device_count"])
        )
        seconds = timeout or self.default_timeout

        async def one(device_id: int) -> tuple[int, CommandResult]:
            try:
                return device_id, await self._link.command(device_id, order, params, seconds)
            except CommandRefused as refused:
                return device_id, CommandResult("fail", str(refused))

        return list(await asyncio.gather(*(one(row["device_id"]) for row in rows)))
