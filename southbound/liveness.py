"""This instance's heartbeat in ``southbound_instances``, the release of the
sessions of instances that stopped beating, and the count of the processes that
share the status-write budget.

A pod that dies comes back under another name, if at all, and never releases the
sessions it held: its devices would stay ``online`` for ever. So every instance
beats every ``--instance-beat-interval``, and each beat also releases the
sessions of any instance silent for longer than ``--instance-timeout`` (their
devices go ``offline``, reason ``instance_lost``). An instance that was only slow
— its beats did not reach the database in time and another took it for lost —
finds its row gone at its next beat and records its sessions again.

In Kubernetes mode each beat then counts the rows still live and gives the count
to this instance's share of the status-write budget (``controller.kube.budget``),
before the released devices' offline states are queued: they go out at the new
share. A beat that fails leaves the budget on its safe share.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from edgefleet.controller.kube.budget import StatusBudget
from edgefleet.controller.store import Store, StoreError
from edgefleet.southbound.events import Reattached, Released, SessionEvents

log = logging.getLogger("edgefleet.southbound.liveness")


class Liveness:
    def __init__(
        self,
        store: Store,
        instance: str,
        timeout: float,
        interval: float,
        events: SessionEvents,
        sessions: Callable[[], list[tuple[int, str, str]]],
        budget: StatusBudget | None = None,
    ) -> None:
        """``sessions`` lists what this instance holds: (device id, state, peer);
        ``budget``, in Kubernetes mode, is told the count at each beat."""
        self._store = store
        self._instance = instance
        self._timeout = timeout
        self.interval = interval
        self._events = events
        self._sessions = sessions
        self._budget = budget
        self.last_beat: float | None = None
        """When the last beat that went through began (Unix time)."""

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
            except StoreError:
                log.warning("liveness beat failed", exc_info=True)

    async def beat(self) -> None:
        began = time.time()
        try:
            if not await self._store.sessions.beat(self._instance):
                self._reattach()
            lost = await self._store.sessions.release_lost(self._timeout)
            if self._budget is not None:
                live = await self._store.sessions.live_instances(self._timeout)
                self._budget.counted(live, time.monotonic())
        except StoreError:
            if self._budget is not None:
                self._budget.count_failed()
            raise
        self.last_beat = began
        if lost:
            log.warning("released sessions of lost instances", extra={"devices": len(lost)})
        for device in lost:
            self._events.publish(
                Released(device["device_id"], device["k8s_namespace"] or "", device["k8s_name"])
            )

    def _reattach(self) -> None:
        held = self._sessions()
        if held:
            log.warning(
                "this instance was taken for lost; recording its sessions again",
                extra={"devices": len(held)},
            )
        now = time.time()
        for device_id, state, peer in held:
            self._events.publish(Reattached(device_id, state, peer, now))
