"""Live state mirrored into each Device resource's status (Kubernetes mode).

Theory of operation
-------------------
The southbound learns about every login, state change and status upload; the
Kubernetes API must not: 10,000 devices reconnecting at once would be 10,000
writes, and a status upload every 15 s per device would be hundreds a second.
So the writer keeps, per device, the status it *wants* the resource to have and
the status it last *wrote*, and two queues of devices whose two differ.

- A login, a state change, a disconnect or a release marks the device in the
  *state* queue at once: state reaches the resource within seconds.
- A configuration report (``configVersion``, ``configInSync``) waits in the
  *metrics* queue: a group change makes as many reports as members.
- A status upload only updates the wanted metrics summary; it marks the device in
  the *metrics* queue when its last metrics write is ``metrics_interval`` (60 s)
  old, and otherwise waits for that moment. ``lastSeen`` rides along with the
  writes that happen anyway.
- One writer drains the queues at this process's share of the installation's
  status-write budget (``controller.kube.budget``; the share follows the
  replicas at every beat), sending a JSON merge-patch to ``/status`` with only
  the fields that differ. The state queue goes first, oldest change first: a
  device's offline is never starved by other devices' metrics, however many.
  Ten changes of one device before its turn are one write: each queue is bounded
  by the number of devices, whatever the burst.

A change that cannot go out at once (the share is spent, or others are ahead of
it) is counted as deferred, by priority. A write that fails leaves the device
queued and is retried after a pause; a Device that no longer exists (404) is
forgotten.

Two southbound pods can briefly disagree about a device that moved between them:
the pod it left writes ``offline`` while the pod it joined writes ``online``. The
pod it left asks ``still_ours`` (the session table) before writing ``offline``,
and every metrics write carries the full state again, so a stale state lasts at
most one metrics interval. An offline write always clears the session fields,
whoever wrote them. What a stopping pod cannot write in its grace period (its
devices' offline states, at its share) the controller's periodic resync puts
right (``controller.kube.resync``).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from edgefleet.controller.kube import status
from edgefleet.controller.kube.budget import StatusBudget
from edgefleet.controller.kube.status import ResourceGone, StatusApi
from edgefleet.southbound.events import (
    CommandFinished,
    ConfigSynced,
    Left,
    LoggedIn,
    Reattached,
    Released,
    SessionEvents,
    StateChanged,
    StatusReceived,
)
from edgefleet.southbound.metrics import SouthboundMetrics

DEVICES = "devices"
RETRY_PAUSE = 1.0
STATE, METRICS = "state", "metrics"
"""The two priorities, in the order they are written."""

log = logging.getLogger("edgefleet.status_writer")


@dataclass
class _Device:
    namespace: str
    name: str
    wanted: dict[str, Any] = field(default_factory=dict)
    written: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    metrics_written_at: float = float("-inf")
    metrics_due: bool = False


class StatusWriter:
    def __init__(
        self,
        api: StatusApi,
        metrics: SouthboundMetrics,
        instance: str,
        budget: StatusBudget,
        metrics_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        still_ours: Callable[[int], Awaitable[bool]] | None = None,
    ) -> None:
        """``budget``: this process's share of the status writes, kept up to date by
        the liveness beat."""
        self.api = api
        self._still_ours = still_ours
        self.instance = instance
        self.budget = budget
        self.metrics_interval = metrics_interval
        self._metrics = metrics
        self._clock = clock
        self._devices: dict[int, _Device] = {}
        # Insertion-ordered sets, oldest change first; a device is in one at most.
        self._queues: dict[str, dict[int, None]] = {STATE: {}, METRICS: {}}
        self._later: list[tuple[float, int]] = []  # (when, device id): metrics not yet due
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # --- what the sessions report ---------------------------------------------------------

    def subscribe(self, events: SessionEvents) -> None:
        events.on(LoggedIn, self._logged_in)
        events.on(Reattached, self._reattached)
        events.on(StateChanged, lambda e: self.state_changed(e.device_id, e.state, e.at))
        events.on(StatusReceived, self._status_received)
        events.on(Left, lambda e: self.disconnected(e.device_id, e.at))
        events.on(Released, self._released)
        events.on(ConfigSynced, self._config_synced)
        events.on(CommandFinished, self._command_finished)

    def _logged_in(self, event: LoggedIn) -> None:
        device = event.device
        if device.resource:
            self.connected(device.device_id, device.namespace, device.resource, event.at)

    def _reattached(self, event: Reattached) -> None:
        """Another instance wrote offline into this device's status when it took this
        one for lost: say again that the session is here."""
        if device := self._devices.get(event.device_id):
            device.written.clear()
            device.wanted.update(state=event.state, sessionPod=self.instance)
            self._mark(event.device_id, STATE)

    def _status_received(self, event: StatusReceived) -> None:
        u = event.utilisation
        summary = status.metrics_summary(
            u.cpu_percent, u.memory_used_percent, u.disk_used_percent, event.at
        )
        self.status_received(event.device_id, summary, event.at)

    def _config_synced(self, event: ConfigSynced) -> None:
        """Configuration reports are as many as devices after a group change: they wait
        behind every state change, like metrics."""
        if device := self._devices.get(event.device_id):
            device.wanted.update(status.config_sync(event.version, event.in_sync))
            self._mark(event.device_id, METRICS)

    def _command_finished(self, event: CommandFinished) -> None:
        """An update installed: the version that runs now goes into the status, behind
        the state changes like the configuration (a rollout finishes many at once)."""
        version = event.installed_version()
        if version is not None and (device := self._devices.get(event.device_id)):
            device.wanted.update(status.software_installed(version, time.time()))
            self._mark(event.device_id, METRICS)

    def _released(self, event: Released) -> None:
        if event.resource:
            self.released(event.device_id, event.namespace, event.resource)

    def connected(self, device_id: int, namespace: str, name: str, at: float) -> None:
        device = self._devices.get(device_id)
        if device is None or (device.namespace, device.name) != (namespace, name):
            device = self._devices[device_id] = _Device(namespace, name)
        device.wanted.update(status.online(self.instance, at))
        self._mark(device_id, STATE)

    def state_changed(self, device_id: int, state: str, last_seen: float) -> None:
        if device := self._devices.get(device_id):
            device.wanted.update(status.changed_state(state, last_seen))
            self._mark(device_id, STATE)

    def status_received(self, device_id: int, summary: dict[str, Any], at: float) -> None:
        device = self._devices.get(device_id)
        if device is None:
            return
        device.metrics = summary
        device.wanted[status.LAST_SEEN] = status.instant(at)
        if device.metrics_due:
            return
        due = device.metrics_written_at + self.metrics_interval
        device.metrics_due = True
        if due <= self._clock():
            self._mark(device_id, METRICS)
        else:
            heapq.heappush(self._later, (due, device_id))
            self._wake.set()

    def released(self, device_id: int, namespace: str, name: str) -> None:
        """A session another instance held, released because that instance died."""
        device = self._devices.setdefault(device_id, _Device(namespace, name))
        device.wanted.update(status.offline())
        self._mark(device_id, STATE)

    def disconnected(self, device_id: int, at: float) -> None:
        if device := self._devices.get(device_id):
            device.wanted.update(status.offline(at))
            self._mark(device_id, STATE)

    @property
    def queue_depth(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    # --- the writer -------------------------------------------------------------------------

    async def run(self) -> None:
        """Write until cancelled, at this process's share of the budget. The next
        device is chosen only once the share allows a write, so a state change that
        arrives meanwhile still goes before a metrics summary queued earlier."""
        while True:
            self._promote_due_metrics()
            if not self.queue_depth:
                self._idle.set()
                await self._sleep_until_work()
                continue
            if delay := self.budget.delay(self._clock()):
                await asyncio.sleep(delay)
                continue
            device_id, priority = self._take()
            patch = self._patch_for(device_id)
            if patch is not None:
                await self._write(device_id, patch, priority)

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

    def _mark(self, device_id: int, priority: str) -> None:
        """Queue the device at ``priority`` (a state change takes it out of the
        metrics queue: its write carries the due metrics too)."""
        state, metrics = self._queues[STATE], self._queues[METRICS]
        if device_id in state or (priority == METRICS and device_id in metrics):
            return  # queued already: the changes coalesce into one write
        metrics.pop(device_id, None)
        ahead = len(state) + (len(metrics) if priority == METRICS else 0)
        if ahead or self.budget.delay(self._clock()):
            self._metrics.status_writes_deferred.labels(priority).inc()
        self._queues[priority][device_id] = None
        self._metrics.status_write_queue.set(self.queue_depth)
        self._idle.clear()
        self._wake.set()

    def _take(self) -> tuple[int, str]:
        """The device to write next, and its priority: state changes first."""
        for priority in (STATE, METRICS):
            queue = self._queues[priority]
            if queue:
                device_id = next(iter(queue))
                del queue[device_id]
                self._metrics.status_write_queue.set(self.queue_depth)
                return device_id, priority
        raise LookupError("nothing queued")

    def _promote_due_metrics(self) -> None:
        now = self._clock()
        while self._later and self._later[0][0] <= now:
            _, device_id = heapq.heappop(self._later)
            if device_id in self._devices:
                self._mark(device_id, METRICS)

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
        if device.wanted.get(status.STATE) == "offline" and patch:
            # The session fields are cleared even when this process never wrote
            # them: another pod (or a dead one) may have.
            patch = {**status.offline(), **patch}
        if device.metrics_due and device.metrics is not None:
            patch = {**device.wanted, status.METRICS: device.metrics}  # the full state, healing
        if set(patch) <= {status.LAST_SEEN}:
            return None  # lastSeen alone is not worth a write: it rides along
        return patch

    async def _write(self, device_id: int, patch: dict[str, Any], priority: str) -> None:
        device = self._devices[device_id]
        if patch.get(status.STATE) == "offline" and not await self._ours(device_id):
            self._devices.pop(device_id, None)  # it lives at another pod now: its news
            self._metrics.status_writes.labels("moved").inc()
            return
        self.budget.spent(self._clock())
        try:
            await self.api.patch_status(DEVICES, device.name, patch, device.namespace)
        except ResourceGone:
            self._devices.pop(device_id, None)
            self._metrics.status_writes.labels("gone").inc()
            return
        except Exception:  # any API failure: keep the change, try again later
            log.warning("status write failed", extra={"device_id": device_id}, exc_info=True)
            self._metrics.status_writes.labels("error").inc()
            self._mark(device_id, priority)
            await asyncio.sleep(RETRY_PAUSE)
            return
        self._metrics.status_writes.labels("ok").inc()
        device.written.update(patch)
        if status.METRICS in patch:
            device.metrics_written_at = self._clock()
            device.metrics_due = False
        offline = device.wanted.get(status.STATE) == device.written.get(status.STATE) == "offline"
        if offline:
            self._devices.pop(device_id, None)  # nothing more to say about it until it logs in
