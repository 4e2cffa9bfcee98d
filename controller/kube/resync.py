"""Device statuses that claim a session nothing holds, put right.

The southbounds' status writers are the fast path, but some offline states never
reach a Device: a pod stopping with more devices than it can write in its grace
period (its share of the status-write budget for 20 s), a write lost to an API
outage, or a status an older version left saying ``offline`` while still naming
the dead pod's session. Every ``interval`` the controller lists the Devices (one
request), asks the database which of those whose status claims a session — state
online or unknown, or a ``sessionPod`` or ``connectedSince`` — are offline with no
session anywhere, and writes offline into those, which also clears the session
fields.

Its writes count against the installation's status-write budget
(``controller.kube.budget``): while a pass has statuses to write, the resync beats
a row of its own in ``southbound_instances``, as a participant, so every
southbound replica shrinks its share to make room; it waits one beat for them to
see it, writes at its own share, and deletes the row when the pass ends. A
controller that dies mid-pass leaves the row to expire after the instance timeout
(the southbounds then write under the budget, never over, meanwhile). A pass with
nothing to write takes no share at all.

A device whose session is so new that its southbound has not recorded it yet may
be written offline wrongly; its southbound's next metrics write (within a minute)
carries the full state again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from edgefleet.controller.api.metrics import ApiMetrics
from edgefleet.controller.kube import status
from edgefleet.controller.kube.budget import StatusBudget
from edgefleet.controller.kube.client import KubeClient, KubeError, KubeNotFound
from edgefleet.controller.kube.resources import DEVICES
from edgefleet.controller.store import Store, StoreError

log = logging.getLogger("edgefleet.resync")


class StatusResync:
    def __init__(
        self,
        kube: KubeClient,
        store: Store,
        interval: float,
        budget: float,
        beat_interval: float,
        instance_timeout: float,
        participant: str | None = None,
        metrics: ApiMetrics | None = None,
    ) -> None:
        """``budget``, ``beat_interval`` and ``instance_timeout`` as the southbounds
        have them; ``participant``: this process's row while it writes (default:
        ``<host name>/status-resync``, which no pod's name can be)."""
        self.kube = kube
        self.store = store
        self.interval = interval
        self.budget = budget
        self.beat_interval = beat_interval
        self.instance_timeout = instance_timeout
        self.participant = participant or f"{socket.gethostname()}/status-resync"
        self.sharing: StatusBudget | None = None
        """The share while a pass writes, else None."""
        if metrics is not None:
            metrics.status_write_share.set_function(self.share)

    def share(self) -> float:
        """Status writes a second this process may make now (0 between passes)."""
        return self.sharing.share(time.monotonic()) if self.sharing else 0.0

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
        if not stale:
            return 0
        async with self._taking_a_share() as budget:
            for device_id in sorted(stale):
                await asyncio.sleep(budget.delay(time.monotonic()))
                budget.spent(time.monotonic())
                try:
                    await self.kube.patch_status(DEVICES, claimed[device_id], status.offline())
                except KubeNotFound:
                    continue  # deleted meanwhile
        return len(stale)

    @asynccontextmanager
    async def _taking_a_share(self) -> AsyncIterator[StatusBudget]:
        """A participant of the budget for the duration of the block: counted by the
        southbounds before the first write, beating until the end."""
        budget = StatusBudget(self.budget, stale_after=self.instance_timeout)
        await self._count(budget)
        self.sharing = budget
        beating = asyncio.create_task(self._beat(budget), name="status-resync-beat")
        try:
            await asyncio.sleep(self.beat_interval)  # every southbound counts us first
            yield budget
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
            self.sharing = None
            try:
                await self.store.sessions.forget_instance(self.participant)
            except StoreError:
                log.warning("resync row left to expire", extra={"row": self.participant})

    async def _count(self, budget: StatusBudget) -> None:
        await self.store.sessions.beat(self.participant)
        live = await self.store.sessions.live_instances(self.instance_timeout)
        budget.counted(live, time.monotonic())

    async def _beat(self, budget: StatusBudget) -> None:
        while True:
            await asyncio.sleep(self.beat_interval)
            try:
                await self._count(budget)
            except StoreError:
                budget.count_failed()
                log.warning("resync beat failed; writing at the safe share", exc_info=True)
