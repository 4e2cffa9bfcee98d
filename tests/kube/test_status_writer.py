"""Live state into Device status: prompt, coalesced, paced at the process's share of
the budget, state before metrics (kmock counts the writes)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from edgefleet.controller.kube.budget import StatusBudget
from edgefleet.controller.kube.client import KubeClient, KubeStatusApi
from edgefleet.southbound.live import LiveStatusBook
from edgefleet.southbound.metrics import SouthboundMetrics
from edgefleet.southbound.status_writer import StatusWriter
from tests.conftest import eventually
from tests.kube.conftest import DEVICE, NAMESPACE, device_body
from tests.kube.emulator import StampingEmulator, busiest_second, is_status_patch

STATES = ("online", "unknown", "offline")


def seed_devices(cluster: StampingEmulator, count: int) -> list[str]:
    names = [f"dev-{n}" for n in range(count)]
    for name in names:
        cluster.objects[DEVICE, NAMESPACE, name] = device_body(name)
    return names


def status_of(cluster: StampingEmulator, name: str) -> dict[str, Any]:
    return dict(cluster.objects[DEVICE, NAMESPACE, name].get("status") or {})


def alone(rate: float) -> StatusBudget:
    """The whole budget: a process that counted itself as the only participant."""
    budget = StatusBudget(rate)
    budget.counted(1, time.monotonic())
    return budget


def new_metrics() -> SouthboundMetrics:
    return SouthboundMetrics(LiveStatusBook(), per_device=False)


def status_patches(cluster: StampingEmulator) -> list[Any]:
    return [r for r in cluster.served if is_status_patch(r)]


async def test_a_burst_for_1000_devices_stays_under_the_cap_and_converges(
    cluster: StampingEmulator, kube: KubeClient
) -> None:
    names = seed_devices(cluster, 1000)
    metrics = new_metrics()
    rate = 250.0
    writer = StatusWriter(KubeStatusApi(kube), metrics, "southbound-0", alone(rate))
    rng = random.Random(7)
    final: dict[str, str] = {}
    now = time.time()
    # Ten changes per device before the writer gets a turn: 10,000 changes.
    for device_id, name in enumerate(names):
        writer.connected(device_id, NAMESPACE, name, now)
        for _ in range(8):
            writer.state_changed(device_id, rng.choice(STATES[:2]), now)
        final[name] = rng.choice(STATES)
        if final[name] == "offline":
            writer.disconnected(device_id, now)
        else:
            writer.state_changed(device_id, final[name], now)
    assert writer.queue_depth == 1000  # bounded by devices, not by changes
    assert metrics.status_write_queue._value.get() == 1000

    async with _running(writer):
        await writer.drained()

    assert len(status_patches(cluster)) == 1000  # one write per device: the changes coalesced
    # In any one second of the request log: the cap, plus the one write that may have
    # left in the second before and arrived in this one (one in flight at a time).
    assert busiest_second(cluster, is_status_patch) <= rate + 1
    assert all(status_of(cluster, name)["state"] == final[name] for name in names)
    online = next(name for name in names if final[name] == "online")
    assert status_of(cluster, online)["sessionPod"] == "southbound-0"
    offline = next(name for name in names if final[name] == "offline")
    assert "sessionPod" not in status_of(cluster, offline)
    assert metrics.status_writes.labels("ok")._value.get() == 1000
    # The first went at once; every other waited for the share.
    assert metrics.status_writes_deferred.labels("state")._value.get() == 999


async def test_state_changes_go_before_metrics_summaries(
    cluster: StampingEmulator, kube: KubeClient
) -> None:
    """100 devices whose metrics summaries are due, then 20 state changes (10 of them
    offline): every state write goes before every metrics-only write, whatever the
    order the changes came in."""
    names = seed_devices(cluster, 120)
    metrics = new_metrics()
    writer = StatusWriter(KubeStatusApi(kube), metrics, "southbound-0", alone(1000))
    now = time.time()
    async with _running(writer):
        for device_id, name in enumerate(names):
            writer.connected(device_id, NAMESPACE, name, now)
        await writer.drained()
    first_round = len(status_patches(cluster))
    deferred = metrics.status_writes_deferred
    before = {p: deferred.labels(p)._value.get() for p in ("state", "metrics")}
    summary = {"cpuPercent": 5.0, "memoryUsedPercent": 50.0, "diskUsedPercent": 20.0}
    for device_id in range(100):  # due at once: their last metrics write is -inf
        writer.status_received(device_id, summary, now)
    for device_id in range(100, 110):
        writer.state_changed(device_id, "unknown", now)
    for device_id in range(110, 120):
        writer.disconnected(device_id, now)
    assert writer.queue_depth == 120
    async with _running(writer):
        await writer.drained()

    order = [
        ("metrics" if "metrics" in r.data["status"] else "state", r.name)
        for r in status_patches(cluster)[first_round:]
    ]
    kinds = [kind for kind, _ in order]
    assert kinds == ["state"] * 20 + ["metrics"] * 100
    assert {name for _, name in order[:20]} == set(names[100:])
    assert all(status_of(cluster, name)["state"] == "offline" for name in names[110:])
    # Each change queued behind another (or behind the share) waited: all but the
    # first of each priority, the first too if the share was not ready for it.
    assert 99 <= deferred.labels("metrics")._value.get() - before["metrics"] <= 100
    assert 19 <= deferred.labels("state")._value.get() - before["state"] <= 20


async def test_an_offline_is_never_starved_by_other_devices_metrics(
    cluster: StampingEmulator, kube: KubeClient
) -> None:
    """At 20 writes a second, 200 devices' metrics keep the writer busy for 10 s; a
    device that leaves meanwhile is written next, not after them."""
    names = seed_devices(cluster, 201)
    writer = StatusWriter(KubeStatusApi(kube), new_metrics(), "southbound-0", alone(1000))
    now = time.time()
    async with _running(writer):
        for device_id, name in enumerate(names):
            writer.connected(device_id, NAMESPACE, name, now)
        await writer.drained()
    writer.budget = alone(20)
    summary = {"cpuPercent": 5.0, "memoryUsedPercent": 50.0, "diskUsedPercent": 20.0}
    for device_id in range(200):
        writer.status_received(device_id, summary, now)
    async with _running(writer):
        await eventually(lambda: _has_metrics(cluster, names[0]))
        writer.disconnected(200, now)
        await eventually(lambda: _has_state(cluster, names[200], "offline"))
        written = sum(1 for name in names[:200] if "metrics" in status_of(cluster, name))
        assert written < 10  # the offline went after the write in hand, ahead of ~190
        assert "sessionPod" not in status_of(cluster, names[200])


async def _has_metrics(cluster: StampingEmulator, name: str) -> bool:
    return "metrics" in status_of(cluster, name)


async def _has_state(cluster: StampingEmulator, name: str, state: str) -> bool:
    return status_of(cluster, name).get("state") == state


async def test_a_released_device_loses_the_dead_pods_session_fields(
    cluster: StampingEmulator, kube: KubeClient
) -> None:
    """The writer of a surviving pod never wrote this Device: the dead pod did. Its
    offline must still clear ``sessionPod`` and ``connectedSince``."""
    [name] = seed_devices(cluster, 1)
    cluster.objects[DEVICE, NAMESPACE, name] = {
        **device_body(name),
        "status": {"state": "online", "sessionPod": "southbound-dead",
                   "connectedSince": "2026-11-23T10:00:00Z"},
    }  # fmt: skip
    writer = StatusWriter(KubeStatusApi(kube), new_metrics(), "southbound-1", alone(1000))
    async with _running(writer):
        writer.released(1, NAMESPACE, name)
        await writer.drained()
    status = status_of(cluster, name)
    assert status["state"] == "offline"
    assert "sessionPod" not in status and "connectedSince" not in status


async def test_metrics_are_written_at_most_once_a_minute(
    cluster: StampingEmulator, kube: KubeClient
) -> None:
    [name] = seed_devices(cluster, 1)
    clock = [1000.0]
    writer = StatusWriter(
        KubeStatusApi(kube),
        new_metrics(),
        "southbound-0",
        alone(1000),
        metrics_interval=60,
        clock=lambda: clock[0],
    )

    def upload(cpu: float) -> None:
        summary = {"cpuPercent": cpu, "memoryUsedPercent": 50.0, "diskUsedPercent": 20.0}
        writer.status_received(1, summary, time.time())

    async with _running(writer):
        writer.connected(1, NAMESPACE, name, time.time())
        upload(10.0)
        await writer.drained()
        assert status_of(cluster, name)["metrics"]["cpuPercent"] == 10.0
        for second in (15, 30, 45):
            clock[0] = 1000.0 + second
            upload(20.0 + second)
            await writer.drained()
        assert status_of(cluster, name)["metrics"]["cpuPercent"] == 10.0
        clock[0] = 1060.0
        upload(99.0)

        async def fresh() -> bool:
            return status_of(cluster, name)["metrics"]["cpuPercent"] == 99.0

        await eventually(fresh)
    with_metrics = [p for p in status_patches(cluster) if "metrics" in p.data["status"]]
    assert len(with_metrics) == 2


async def test_a_device_whose_resource_is_gone_is_forgotten(
    cluster: StampingEmulator, kube: KubeClient
) -> None:
    metrics = new_metrics()
    writer = StatusWriter(KubeStatusApi(kube), metrics, "southbound-0", alone(1000))
    async with _running(writer):
        writer.connected(1, NAMESPACE, "never-applied", time.time())
        await writer.drained()
        writer.state_changed(1, "unknown", time.time())  # nothing left to write it to
        await writer.drained()
    assert metrics.status_writes.labels("gone")._value.get() == 1
    assert writer.queue_depth == 0


@asynccontextmanager
async def _running(writer: StatusWriter) -> AsyncIterator[None]:
    """The writer's loop as a task for the duration of a ``with`` block."""
    task = asyncio.create_task(writer.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_pod_the_device_left_does_not_overwrite_the_newer_pod(
    cluster: StampingEmulator, kube: KubeClient
) -> None:
    [name] = seed_devices(cluster, 1)
    metrics = new_metrics()

    async def held_elsewhere(device_id: int) -> bool:
        return False

    left = StatusWriter(KubeStatusApi(kube), metrics, "southbound-0", alone(1000),
                        still_ours=held_elsewhere)  # fmt: skip
    joined = StatusWriter(KubeStatusApi(kube), metrics, "southbound-1", alone(1000))
    async with _running(left), _running(joined):
        left.connected(1, NAMESPACE, name, time.time())
        await left.drained()
        joined.connected(1, NAMESPACE, name, time.time())
        await joined.drained()
        left.disconnected(1, time.time())  # the superseded session ends at the old pod
        await left.drained()
    assert status_of(cluster, name)["state"] == "online"
    assert status_of(cluster, name)["sessionPod"] == "southbound-1"
    assert metrics.status_writes.labels("moved")._value.get() == 1
