"""The controller puts right Device statuses that claim a session nothing holds, at
its share of the status-write budget."""

from __future__ import annotations

import asyncio
from typing import Any

import kmock

from edgefleet.controller.api.metrics import ApiMetrics
from edgefleet.controller.kube.client import KubeClient
from edgefleet.controller.kube.resync import StatusResync
from edgefleet.controller.store import Store
from edgefleet.controller.store.sessions import SessionChange
from tests.kube.conftest import DEVICE, NAMESPACE, device_body

BEAT = 0.05


def resync_of(kube: KubeClient, store: Store, **options: Any) -> StatusResync:
    return StatusResync(kube, store, interval=300, budget=1000, beat_interval=BEAT,
                        instance_timeout=60, participant="controller/status-resync",
                        **options)  # fmt: skip


async def seed(
    cluster: kmock.KubernetesEmulator, store: Store, statuses: dict[str, dict[str, Any]]
) -> None:
    """A row and a Device with ``status`` per name, ids from 1 in order."""
    for device_id, (name, current) in enumerate(statuses.items(), start=1):
        await store.devices.create(
            {"device_id": device_id, "name": name, "type": "camera", "hardware_sn": name,
             "hardware_model": "M", "secret": "x" * 60, "k8s_name": name,
             "k8s_namespace": NAMESPACE}
        )  # fmt: skip
        cluster.objects[DEVICE, NAMESPACE, name] = {
            **device_body(name),
            "status": {"deviceId": str(device_id), **current},
        }


def status(cluster: kmock.KubernetesEmulator, name: str) -> dict[str, Any]:
    return dict(cluster.objects[DEVICE, NAMESPACE, name]["status"])


async def test_statuses_claiming_online_with_nothing_held_are_put_right(
    cluster: kmock.KubernetesEmulator, kube: KubeClient, sqlite_store: Store
) -> None:
    online = {"state": "online", "sessionPod": "southbound-0"}
    await seed(cluster, sqlite_store,
               {"held": online, "left-behind": online, "quiet": {"state": "offline"}})  # fmt: skip
    # "held" has a session; "left-behind" was released by a pod that could not
    # write its offline status before it stopped.
    await sqlite_store.sessions.apply(
        "southbound-1", [SessionChange("connected", 1, "connected", {}, address="b:1")]
    )

    resync = resync_of(kube, sqlite_store)
    assert await resync.once() == 1

    assert status(cluster, "left-behind")["state"] == "offline"
    assert "sessionPod" not in status(cluster, "left-behind")
    assert status(cluster, "held")["state"] == "online"
    assert await resync.once() == 0  # nothing left to put right


async def test_an_offline_status_that_still_names_a_session_is_cleared(
    cluster: kmock.KubernetesEmulator, kube: KubeClient, sqlite_store: Store
) -> None:
    """What an older southbound left when another released its dead pod's devices:
    offline, but naming the dead pod's session."""
    await seed(cluster, sqlite_store, {
        "stale-pod": {"state": "offline", "sessionPod": "southbound-dead"},
        "stale-since": {"state": "offline", "connectedSince": "2026-11-23T10:00:00Z"},
        "clean": {"state": "offline", "lastSeen": "2026-11-23T10:00:00Z"},
    })  # fmt: skip

    assert await resync_of(kube, sqlite_store).once() == 2

    for name in ("stale-pod", "stale-since"):
        assert status(cluster, name)["state"] == "offline"
        assert not {"sessionPod", "connectedSince"} & set(status(cluster, name)), name
    assert status(cluster, "clean")["lastSeen"] == "2026-11-23T10:00:00Z"


async def test_the_resync_takes_a_share_only_while_it_writes(
    cluster: kmock.KubernetesEmulator, kube: KubeClient, sqlite_store: Store
) -> None:
    """Beside two southbound replicas, a pass with writes to make counts itself as a
    third participant (a row the replicas count), writes at a third of the budget,
    and leaves; a pass with nothing to write never joins."""
    await seed(cluster, sqlite_store, {f"cam-{n}": {"state": "online"} for n in range(3)})
    for replica in ("southbound-0", "southbound-1"):
        await sqlite_store.sessions.beat(replica)
    metrics = ApiMetrics(count_devices=None)
    resync = resync_of(kube, sqlite_store, metrics=metrics)
    counted: list[int] = []
    shares: list[float] = []

    async def watch() -> None:
        while True:
            counted.append(await sqlite_store.sessions.live_instances(60))
            [sample] = metrics.status_write_share.collect()[0].samples
            shares.append(sample.value)
            await asyncio.sleep(BEAT / 5)

    watching = asyncio.create_task(watch())
    try:
        assert await resync.once() == 3
    finally:
        watching.cancel()
    assert 3 in counted  # the replicas could count it
    assert max(shares) == 1000 / 3  # its share while it wrote, and no more
    assert await sqlite_store.sessions.live_instances(60) == 2  # gone again
    assert resync.share() == 0.0

    assert await resync.once() == 0  # nothing to write: it never registers
    assert await sqlite_store.sessions.live_instances(60) == 2
