"""Live state into Device status: prompt, coalesced, paced (kmock counts the writes)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import kmock

from edgefleet.controller.kube.client import KubeClient, KubeStatusApi
from edgefleet.southbound.live import LiveStatusBook
from edgefleet.southbound.metrics import SouthboundMetrics
from edgefleet.southbound.status_writer import StatusWriter
from tests.conftest import eventually
from tests.kube.conftest import DEVICE, NAMESPACE, device_body, requests_to

STATES = ("online", "unknown", "offline")


def seed_devices(cluster: kmock.KubernetesEmulator, count: int) -> list[str]:
    names = [f"dev-{n}" for n in range(count)]
    for name in names:
        cluster.objects[DEVICE, NAMESPACE, name] = device_body(name)
    return names


def status_of(cluster: kmock.KubernetesEmulator, name: str) -> dict[str, Any]:
    return dict(cluster.objects[DEVICE, NAMESPACE, name].get("status") or {})


async def test_a_burst_for_1000_devices_stays_under_the_cap_and_converges(
    cluster: kmock.KubernetesEmulator, kube: KubeClient
) -> None:
    names = seed_devices(cluster, 1000)
    metrics = SouthboundMetrics(LiveStatusBook(), per_device=False)
    rate = 250.0
    writer = StatusWriter(KubeStatusApi(kube), metrics, "southbound-0", rate=rate)
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

    started = time.monotonic()
    async with _running(writer):
        await writer.drained()
    elapsed = time.monotonic() - started

    patches = [r for r in requests_to(cluster, DEVICE, "patch") if r.subresource == "status"]
    assert len(patches) == 1000  # one write per device: the changes coalesced
    assert len(patches) <= elapsed * rate + 1
    assert all(status_of(cluster, name)["state"] == final[name] for name in names)
    online = next(name for name in names if final[name] == "online")
    assert status_of(cluster, online)["sessionPod"] == "southbound-0"
    offline = next(name for name in names if final[name] == "offline")
    assert "sessionPod" not in status_of(cluster, offline)
    assert metrics.status_writes.labels("ok")._value.get() == 1000


async def test_metrics_are_written_at_most_once_a_minute(
    cluster: kmock.KubernetesEmulator, kube: KubeClient
) -> None:
    [name] = seed_devices(cluster, 1)
    clock = [1000.0]
    writer = StatusWriter(
        KubeStatusApi(kube),
        SouthboundMetrics(LiveStatusBook(), per_device=False),
        "southbound-0",
        rate=1000,
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
    patches = [r for r in requests_to(cluster, DEVICE, "patch") if r.subresource == "status"]
    with_metrics = [p for p in patches if "metrics" in p.data["status"]]
    assert len(with_metrics) == 2


async def test_a_device_whose_resource_is_gone_is_forgotten(
    cluster: kmock.KubernetesEmulator, kube: KubeClient
) -> None:
    metrics = SouthboundMetrics(LiveStatusBook(), per_device=False)
    writer = StatusWriter(KubeStatusApi(kube), metrics, "southbound-0", rate=1000)
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
    cluster: kmock.KubernetesEmulator, kube: KubeClient
) -> None:
    [name] = seed_devices(cluster, 1)
    metrics = SouthboundMetrics(LiveStatusBook(), per_device=False)

    async def held_elsewhere(device_id: int) -> bool:
        return False

    left = StatusWriter(KubeStatusApi(kube), metrics, "southbound-0", rate=1000,
                        still_ours=held_elsewhere)  # fmt: skip
    joined = StatusWriter(KubeStatusApi(kube), metrics, "southbound-1", rate=1000)
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
