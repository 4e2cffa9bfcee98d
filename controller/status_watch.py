"""``device.status`` at the stream's pace for the devices someone is watching.

The device log keeps one status per device per ten minutes: writing every
upload of a large fleet would cost the database thousands of rows a second. So
the log alone gives the stream six ``device.status`` events an hour per device.
A client that watches one device (``GET /api/v1/stream?device_id=…``, as the
console's device page does) wants it at the pace ACCESS.md states, one per
``status_interval`` (15 s). This task serves those: every interval it reads the
live status of each device that a subscription names, from whoever holds its
session (in process, or the southbound pod over HTTP), and hands a new one to
those subscriptions. The cost is one status read per watched device per
interval, whatever the size of the fleet; fleet-wide and group subscriptions
keep the log's pace.

These events are not in the log: their ``event_id`` is null, and their SSE id
is the last logged one the hub read, so a client resuming gets the logged events
it missed, and the live statuses from then on.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from edgefleet.agent.protocol import CommandRefused
from edgefleet.controller.device_link import DeviceLink, LiveView
from edgefleet.controller.store import StoreError
from edgefleet.controller.stream import EventHub, StreamEvent, encode, groups_of

log = logging.getLogger("edgefleet.stream.status")

KIND = "device.status"


class StatusWatch:
    def __init__(self, hub: EventHub, link: DeviceLink) -> None:
        self._hub = hub
        self._link = link
        self._sent: dict[int, float] = {}
        """Each watched device's ``last_seen`` sent last."""

    async def run(self) -> None:
        interval = self._hub.settings.status_interval
        await self._hub.started.wait()
        while True:
            try:
                await self.tick()
            except StoreError as exc:
                log.warning("live statuses wait for the database", extra={"error": str(exc)})
            await asyncio.sleep(interval)

    async def tick(self) -> int:
        """Send each watched device's status if it is new; returns how many went."""
        watched = self._hub.watchers(KIND)
        self._sent = {d: at for d, at in self._sent.items() if d in watched}
        if not watched:
            return 0
        views = await asyncio.gather(*(self._read(d) for d in watched))
        fresh = [v for v in views if v is not None and v.last_seen > self._sent.get(v.device_id, 0)]
        if not fresh:
            return 0
        async with self._hub.store.db.read() as connection:
            groups = await groups_of(connection, {view.device_id for view in fresh})
        for view in fresh:
            self._sent[view.device_id] = view.last_seen
            row = {
                "event_id": None,
                "device_id": view.device_id,
                "event": "status_uploaded",
                "at": datetime.fromtimestamp(view.last_seen, UTC).replace(tzinfo=None),
                "detail": {
                    "cpu_percent": view.cpu_percent,
                    "memory_used_percent": view.memory_used_percent,
                    "disk_used_percent": view.disk_used_percent,
                },
            }
            event = StreamEvent(
                self._hub.cursor,
                view.device_id,
                KIND,
                groups.get(view.device_id, frozenset()),
                encode(row, KIND),
                logged=False,
            )
            for sub in watched[view.device_id]:
                if sub.wants(event):
                    sub.offer(event)
        return len(fresh)

    async def _read(self, device_id: int) -> LiveView | None:
        try:
            return await self._link.status(device_id)
        except CommandRefused:
            return None  # not connected: nothing to send
