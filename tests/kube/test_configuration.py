"""Desired configuration in Kubernetes mode, against the emulated API server: REST
writes land in ``spec.config`` first, a ``spec.config`` set with kubectl becomes
the desired document, and a device's report shows in its status as
``configVersion`` and ``configInSync``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest
import websockets

from edgefleet.agent import protocol
from edgefleet.controller.kube.client import KubeClient, KubeStatusApi
from edgefleet.controller.kube.mirror import KubeMirror
from edgefleet.controller.kube.operator import Reconciler
from edgefleet.controller.kube.resources import DEVICE_GROUPS, DEVICES
from edgefleet.controller.settings import JobSettings
from edgefleet.controller.store import Store
from edgefleet.southbound.server import KubeStatus, Southbound
from tests.agent.conftest import SOUTHBOUND
from tests.api_client import ApiClient, running_api
from tests.conftest import eventually
from tests.kube.conftest import DEVICE, NAMESPACE, device_body, group_body
from tests.kube.test_operator import synced
from tests.kube.test_processes import seed_device

JOBS = JobSettings(tick=0.02, minute=0.2)


@pytest.fixture
async def api(
    kube: KubeClient, operator: Reconciler, sqlite_store: Store
) -> AsyncIterator[ApiClient]:
    async with running_api(sqlite_store, "t", mirror=KubeMirror(kube, sqlite_store)) as client:
        yield client


async def test_a_rest_configuration_write_is_the_resources_spec_config(
    api: ApiClient, kube: KubeClient
) -> None:
    device = (await api.post("/api/v1/devices", {"name": "cam-9", "hardware_sn": "SN9",
                                                 "hardware_model": "M"})).data  # fmt: skip
    await synced(kube, device["k8s_name"])
    path = f"/api/v1/devices/{device['device_id']}/config"
    await api.put(path, {"config": {"exposure": 30, "upload": {"images": True, "video": True}}})
    await api.put(path, {"config": {"upload": {"images": False}}})
    body = await kube.get(DEVICES, device["k8s_name"])
    assert body["spec"]["config"] == {"upload": {"images": False}}
    # One version a write: the operator, taking spec.config, finds it in force.
    desired = (await api.get(path)).data
    assert desired["desired"] == {"upload": {"images": False}} and desired["desired_version"] == 2
    # Conditional writes, each on the version the last one answered: the operator
    # applying the resource before the write's own row lands never makes one 412.
    for exposure in range(10):
        answer = await api.patch(
            path, {"config": {"exposure": exposure}}, headers={"If-Match": str(2 + exposure)}
        )
        assert answer.status == 200, answer.body
        assert answer.data["desired_version"] == 3 + exposure

    group = (await api.post("/api/v1/groups", {"name": "night-cams"})).data
    await api.put(f"/api/v1/groups/{group['group_id']}/config", {"config": {"fps": 5}})
    assert (await kube.get(DEVICE_GROUPS, group["k8s_name"]))["spec"]["config"] == {"fps": 5}


async def test_spec_config_set_with_kubectl_becomes_the_desired_configuration(
    api: ApiClient, kube: KubeClient
) -> None:
    night = group_body("night", displayName="night", config={"fps": 5, "mode": "night"})
    await kube.create(DEVICE_GROUPS, night)
    await synced(kube, "night", DEVICE_GROUPS)
    await kube.create(DEVICES, device_body("cam-3", groups=["night"], config={"mode": "day"}))
    body = await synced(kube, "cam-3")
    path = f"/api/v1/devices/{body['status']['deviceId']}/config"

    async def desired() -> dict[str, Any] | None:
        answer = (await api.get(path + "?effective=true")).data
        return answer if answer["desired"] == {"fps": 5, "mode": "day"} else None

    answer = await eventually(desired)
    assert answer["groups"] == ["night"]
    assert (await api.get(path)).data["desired"] == {"mode": "day"}


async def test_a_devices_report_shows_in_its_status(
    cluster: kmock.KubernetesEmulator, kube: KubeClient, sqlite_store: Store
) -> None:
    cluster.objects[DEVICE, NAMESPACE, "cam-1"] = device_body("cam-1")
    await seed_device(sqlite_store, 42, "cam-1")
    await sqlite_store.configs.set_device(42, lambda _: {"exposure": 30}, None)
    southbound = Southbound(
        SOUTHBOUND, sqlite_store, 4, KubeStatus(KubeStatusApi(kube), 50, metrics_interval=60)
    )
    await southbound.start()
    try:
        async with websockets.connect(f"ws://127.0.0.1:{southbound.port}/ws") as ws:
            login = {"device_id": "42", "password": "a-long-password", "extensions": ["config"]}
            await ws.send(json.dumps(login))
            assert json.loads(await ws.recv())["status"] == "success"
            update = json.loads(await ws.recv())
            assert update["type"] == "config_update"
            await ws.send(
                protocol.config_report(1, {"exposure": 30}, None, update["Headers"]["request_id"])
            )

            async def reported() -> dict[str, Any] | None:
                status = (await kube.get(DEVICES, "cam-1")).get("status") or {}
                return status if status.get("configInSync") is True else None

            status = await eventually(reported)
            assert status["configVersion"] == 1
    finally:
        await southbound.stop()


async def test_a_configuration_job_writes_each_devices_spec_config(
    kube: KubeClient, operator: Reconciler, sqlite_store: Store
) -> None:
    """A job takes the same path as a REST write: the Device's spec.config first, so
    the operator never takes the old document back from the resource."""
    mirror = KubeMirror(kube, sqlite_store)
    async with running_api(sqlite_store, "t", mirror=mirror, jobs=JOBS) as api:
        device = (await api.post("/api/v1/devices", {"name": "cam-7", "hardware_sn": "SN7",
                                                     "hardware_model": "M"})).data  # fmt: skip
        await synced(kube, device["k8s_name"])
        path = f"/api/v1/devices/{device['device_id']}/config"
        await api.put(path, {"config": {"mode": "night"}})
        job = await api.post(
            "/api/v1/jobs",
            {
                "name": "exposure",
                "target": {"device_ids": [device["device_id"]]},
                "action": {"configuration": {"patch": {"exposure": 30}}},
                "rollout": {"max_per_minute": 600},
            },
        )
        assert job.status == 201, job.body

        async def written() -> dict[str, Any] | None:
            [row] = (await api.get(f"/api/v1/jobs/{job.data['job_id']}/devices")).data["items"]
            return row if row["config_version"] is not None else None

        row = await eventually(written)
        assert row["config_version"] == 2 and row["state"] == "queued"  # the device is away
        body = await kube.get(DEVICES, device["k8s_name"])
        assert body["spec"]["config"] == {"mode": "night", "exposure": 30}
        desired = (await api.get(path)).data
        assert desired["desired"] == {"mode": "night", "exposure": 30}
        assert desired["desired_version"] == 2
