"""The controller puts right Device statuses that say online while nothing holds them."""

from __future__ import annotations

import kmock

from edgefleet.controller.kube.client import KubeClient
from edgefleet.controller.kube.resync import StatusResync
from edgefleet.controller.store import Store
from edgefleet.controller.store.sessions import SessionChange
from tests.kube.conftest import DEVICE, NAMESPACE, device_body


async def test_statuses_claiming_online_with_nothing_held_are_put_right(
    cluster: kmock.KubernetesEmulator, kube: KubeClient, sqlite_store: Store
) -> None:
    for device_id, name in ((1, "held"), (2, "left-behind"), (3, "quiet")):
        await sqlite_store.devices.create(
            {"device_id": device_id, "name": name, "type": "camera", "hardware_sn": name,
             "hardware_model": "M", "secret": "x" * 60, "k8s_name": name,
             "k8s_namespace": NAMESPACE}
        )  # fmt: skip
        state = "offline" if name == "quiet" else "online"
        cluster.objects[DEVICE, NAMESPACE, name] = {
            **device_body(name),
            "status": {"deviceId": str(device_id), "state": state, "sessionPod": "southbound-0"},
        }
    # "held" has a session; "left-behind" was released by a pod that could not
    # write its offline status before it stopped.
    await sqlite_store.sessions.apply(
        "southbound-1", [SessionChange("connected", 1, "connected", {}, address="b:1")]
    )

    resync = StatusResync(kube, sqlite_store, interval=300, rate=1000)
    assert await resync.once() == 1

    def status(name: str) -> dict:
        return dict(cluster.objects[DEVICE, NAMESPACE, name]["status"])

    assert status("left-behind")["state"] == "offline"
    assert "sessionPod" not in status("left-behind")
    assert status("held")["state"] == "online"
    assert await resync.once() == 0  # nothing left to put right
