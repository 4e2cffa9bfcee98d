"""Device statuses that say online when nothing holds the device, put right.

The southbounds' status writers are the fast path, but some offline states never
reach a Device: a pod stopping with more devices than it can write in its grace
period (20 a second for 20 s is 400), a write lost to an API outage. Every
``interval`` the controller lists the Devices (one request), asks the database
which of those that claim online or unknown are offline with no session anywhere,
and writes offline into those, at most ``rate`` a second.

A device whose session is so new that its southbound has not recorded it yet may
be written offline wrongly; its southbound's next metrics write (within a minute)
carries the full state again.
"""

from __future__ import annotations

import asyncio
import logging

from edgefleet.controller.kube import status
from edgefleet.controller.kube.client import KubeClient, KubeError, KubeNotFound
from edgefleet.controller.kube.resources import DEVICES
from edgefleet.controller.store import Store, StoreError

log = logging.getLogger("edgefleet.resync")


class StatusResync:
    def __init__(self, kube: KubeClient, store: Store, interval: float, rate: float) -> None:
        self.kube = kube
        self.store = store
        self.interval = interval
        self.pause = 1.0 / rate

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                corrected = await self.once()
            except (KubeError, StoreError):
                log.warning("status resync failed; trying again later", exc_info=True)
                continue
            if corrected:
                log.warning("stale Device statuses put right", extra={"devices": corrected})

    async def once(self) -> int:
        """One pass; returns how many statuses it wrote."""
        claimed: dict[int, str] = {}
        for body in await self.kube.list(DEVICES):
            current = body.get("status") or {}
            device_id = status.device_id(current)
            if status.claims_session(current) and device_id is not None:
                claimed[device_id] = body["metadata"]["name"]
        stale = await self.store.sessions.offline_unheld(sorted(claimed))
        for device_id in sorted(stale):
            try:
                await self.kube.patch_status(DEVICES, claimed[device_id], status.offline())
            except KubeNotFound:
                continue  # deleted meanwhile
            await asyncio.sleep(self.pause)
        return len(stale)
