"""How many devices each DeviceGroup has, in its status (``kubectl get efgroup``).

Memberships change with the Devices (``spec.groups``), not with the group, and a
thousand Devices applied at once would be a thousand writes to one group. So the
operator only notes which groups changed; this writer counts them from the
database and patches each group's ``status.deviceCount`` at most once a
``pause``, however many of its members changed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from edgefleet.controller.kube import status
from edgefleet.controller.kube.client import KubeClient, KubeError, KubeNotFound
from edgefleet.controller.kube.resources import DEVICE_GROUPS
from edgefleet.controller.store import GroupNotFound, Store, StoreError

log = logging.getLogger("edgefleet.operator")


class GroupCounts:
    def __init__(self, store: Store, kube: KubeClient, pause: float = 1.0) -> None:
        self._store = store
        self._kube = kube
        self._pause = pause
        self._changed: set[int] = set()
        self._wake = asyncio.Event()

    def changed(self, group_ids: Iterable[int]) -> None:
        self._changed |= set(group_ids)
        if self._changed:
            self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._pause)  # let a burst of membership changes gather
            self._wake.clear()
            groups, self._changed = self._changed, set()
            for group_id in sorted(groups):
                try:
                    await self._write(group_id)
                except (StoreError, KubeError):
                    log.warning("group count not written", extra={"group_id": group_id})
                    self.changed([group_id])

    async def _write(self, group_id: int) -> None:
        try:
            group = await self._store.groups.get(group_id)
        except GroupNotFound:
            return
        if not group.get("k8s_name"):
            return
        patch = {status.DEVICE_COUNT: group["device_count"]}
        try:
            await self._kube.patch_status(DEVICE_GROUPS, group["k8s_name"], patch)
        except KubeNotFound:
            return
