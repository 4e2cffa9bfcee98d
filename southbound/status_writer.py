"""Live state mirrored into each Device resource's status (Kubernetes mode).

Theory of operation
-------------------
The southbound learns about every login, state change and status upload; the
Kubernetes API must not: 10,000 devices reconnecting at once would be 10,000
writes, and a status upload every 15 s per device would be hundreds a second.
So the writer keeps, per device, the status it *wants* the resource to have and
the status it last *wrote*, and a set of devices whose two differ ("dirty").

- A login, a state change or a disconnect marks the device dirty at once: state
  reaches the resource within seconds.
- A status upload only updates the wanted metrics summary; it marks the device
  dirty when its last metrics write is ``metrics_interval`` (60 s) old, and
  otherwise waits for that moment. ``lastSeen`` rides along with the writes that
  happen anyway.
- One writer drains the dirty set at most ``rate`` writes a second, sending a
  JSON merge-patch to ``/status`` with only the fields that differ. Ten changes
  of one device before its turn are one write: the queue is bounded by the
  number of devices, whatever the burst.

A write that fails leaves the device dirty and is retried after a pause; a
Device that no longer exists (404) is forgotten.

Two southbound pods can briefly disagree about a device that moved between them:
the pod it left writes ``offline`` while the pod it joined writes ``online``. The
pod it left asks ``still_ours`` (the session table) before writing ``offline``,
and every metrics write carries the full state again, so a stale state lasts at
most one metrics interval. What a stopping pod cannot write in its grace period
(its devices' offline states, at ``rate`` a second) the controller's periodic
resync puts right (``controller.kube.resync``).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from edgefleet.southbound.metrics import SouthboundMetrics

DEVICES = "devices"
RETRY_PAUSE = 1.0

log = logging.getLogger("edgefleet.status_writer")


class StatusApi(Protocol):
    async def patch_status(
        self, plural: str, name: str, status: dict[str, Any], namespace: str | None = None
    ) -> None: ...


class ResourceGone(Exception):
    """Raised by a ``StatusApi`` when the resource does not exist (404)."""


@dataclass
class _Device:
    namespace: str
    name: str
    wanted: dict[str, Any] = field(default_factory=dict)
    written: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    metrics_written_at: float = float("-inf")
    metrics_due: bool = False


def _instant(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatusWriter:
    def __init__(
        self,
        api: StatusApi,
        metrics: SouthboundMetrics,
        instance: str,
        rate: float = 20.0,
        metrics_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        still_ours: Callable[[int], Awaitable[bool]] | None = None,
    ) -> None:
        self.api = api
        self._still_ours = still_ours
        self.instance = instance
        self.interval = 1.0 / rate
        self.metrics_interval = metrics_interval
        self._metrics = metrics
        self._clock = clock
        self._devices: dict[int, _Device] = {}
        self._dirty: dict[int, None] = {}  # insertion-ordered set: oldest change first
        self._later: list[tuple[float, int]] = []  # (when, device id): metrics not yet due
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # --- what the southbound reports ---------------------------------------------------

    def connected(self, device_id: int, namespace: str, name: str, at: float) -> None:
        device = self._devices.get(device_id)
        if device is None or (device.namespace, device.name) != (namespace, name):
            device = self._devices[device_id] = _Device(namespace, name)
        device.wanted.update(
            state="online",
            connectedSince=_instant(at),
            lastSeen=_instant(at),
            sessionPod=self.instance,
        )
        self._mark(device_id)

    def state_changed(self, device_id: int, state: str, last_seen: float) -> None:
        if device := self._devices.get(device_id):
            device.wanted.update(state=state, lastSeen=_instant(last_seen))
            self._mark(device_id)

    def status_received(self, device_id: int, summary: dict[str, float | None], at: float) -> None:
        device = self._devices.get(device_id)
        if device is None:
            return
        device.metrics = {**summary, "updatedAt": _instant(at)}
        device.wanted["lastSeen"] = _instant(at)
        if device.metrics_due:
            return
        due = device.metrics_written_at + self.metrics_interval
        device.metrics_due = True
        if due <= self._clock():
            self._mark(device_id)
        else:
            heapq.heappush(self._later, (due, device_id))
            self._wake.set()

    def released(self, device_id: int, namespace: str, name: str) -> None:
        """A session another instance held, released because that instance died."""
        device = self._devices.setdefault(device_id, _Device(namespace, name))
        device.wanted.update(state="offline", connectedSince=None, sessionPod=None)
        self._mark(device_id)

    def disconnected(self, device_id: int, at: float) -> None:
        if device := self._devices.get(device_id):
            device.wanted.update(
                state="offline", lastSeen=_instant(at), connectedSince=None, sessionPod=None
            )
            self._mark(device_id)

    @property
    def queue_depth(self) -> int:
        return len(self._dirty)

    # --- the writer -------------------------------------------------------------------------

    async def run(self) -> None:
        """Write until cancelled, at most one write per ``interval``."""
        while True:
            self._promote_due_metrics()
            if not self._dirty:
                self._idle.set()
                await self._sleep_until_work()
                continue
            device_id = next(iter(self._dirty))
            del self._dirty[device_id]
            self._metrics.status_write_queue.set(len(self._dirty))
            patch = self._patch_for(device_id)
            if patch is None:
                continue
            started = self._clock()
            await self._write(device_id, patch)
            await asyncio.sleep(max(0.0, self.interval - (self._clock() - started)))

    async def drained(self) -> None:
        """Wait until nothing is left to write now (tests, shutdown)."""
        await self._idle.wait()

    async def _ours(self, device_id: int) -> bool:
        if self._still_ours is None:
            return True
        try:
            return await self._still_ours(device_id)
        except Exception:  # the database is away: write what this pod knows
            log.warning("session owner unknown", extra={"device_id": device_id}, exc_info=True)
            return True

    def _mark(self, device_id: int) -> None:
        self._dirty[device_id] = None
        self._metrics.status_write_queue.set(len(self._dirty))
        self._idle.clear()
        self._wake.set()

    def _promote_due_metrics(self) -> None:
        now = self._clock()
        while self._later and self._later[0][0] <= now:
            _, device_id = heapq.heappop(self._later)
            if device_id in self._devices:
                self._mark(device_id)

    async def _sleep_until_work(self) -> None:
        self._wake.clear()
        timeout = self._later[0][0] - self._clock() if self._later else None
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    def _patch_for(self, device_id: int) -> dict[str, Any] | None:
        device = self._devices.get(device_id)
        if device is None:
            return None
        patch = {k: v for k, v in device.wanted.items() if device.written.get(k) != v}
        if device.metrics_due and device.metrics is not None:
            patch = {**device.wanted, "metrics": device.metrics}  # the full state, healing
        if set(patch) <= {"lastSeen"}:
            return None  # lastSeen alone is not worth a write: it rides along
        return patch

    async def _write(self, device_id: int, patch: dict[str, Any]) -> None:
        device = self._devices[device_id]
        if patch.get("state") == "offline" and not await self._ours(device_id):
            self._devices.pop(device_id, None)  # it lives at another pod now: its news
            self._metrics.status_writes.labels("moved").inc()
            return
        try:
            await self.api.patch_status(DEVICES, device.name, patch, device.namespace)
        except ResourceGone:
            self._devices.pop(device_id, None)
            self._metrics.status_writes.labels("gone").inc()
            return
        except Exception:  # any API failure: keep the change, try again later
            log.warning("status write failed", extra={"device_id": device_id}, exc_info=True)
            self._metrics.status_writes.labels("error").inc()
            self._mark(device_id)
            await asyncio.sleep(RETRY_PAUSE)
            return
        self._metrics.status_writes.labels("ok").inc()
        device.written.update(patch)
        if "metrics" in patch:
            device.metrics_written_at = self._clock()
            device.metrics_due = False
        if device.wanted.get("state") == "offline" and device.written.get("state") == "offline":
            self._devices.pop(device_id, None)  # nothing more to say about it until it logs in
