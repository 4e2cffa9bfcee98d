"""The REST API in Kubernetes mode: writes go to the resources first, then to the
database; reads come from the database. The operator runs too, as in the pod."""

from __future__ import annotations

from pathlib import Path

import bcrypt
import kmock

from edgefleet.controller.kube.client import KubeClient, KubeNotFound
from edgefleet.controller.kube.mirror import KubeMirror
from edgefleet.controller.kube.resources import DEVICE_GROUPS, DEVICES
from edgefleet.controller.store import DeviceFilter, Store
from tests.api_client import ApiClient, running_api
from tests.conftest import eventually
from tests.kube.conftest import (
    DEVICE,
    DEVICE_GROUP,
    NAMESPACE,
    SECRET,
    device_body,
    requests_to,
)
from tests.kube.emulator import write_kubeconfig
from tests.kube.test_operator import stored_secret, synced

REGISTRATION = {"name": "gate-cam-17", "hardware_sn": "SN17", "hardware_model": "ModelB",
                "type": "camera", "eth_mac": "00:1A:2B:3C:4D:5E"}  # fmt: skip


async def test_a_device_registered_over_rest_is_a_resource(
    cluster: kmock.KubernetesEmulator, api: ApiClient, kube: KubeClient, sqlite_store: Store
) -> None:
    answer = await api.post("/api/v1/devices", REGISTRATION)
    assert answer.status == 201, answer.body
    device = answer.data
    assert (device["k8s_name"], device["k8s_namespace"]) == ("gate-cam-17", NAMESPACE)

    # The Secret came first (so the operator adopts its password), then the Device.
    creates = [r.resource for r in cluster.served if r.method == kmock.method.POST]
    assert creates[:2] == [SECRET, DEVICE]
    [created] = requests_to(cluster, DEVICE, "post")
    assert created.data["spec"] == {
        "displayName": "gate-cam-17",
        "type": "camera",
        "description": "",
        "disabled": False,
        "hardware": {"sn": "SN17", "model": "ModelB", "ethMac": "00:1A:2B:3C:4D:5E"},
        "groups": [],
    }
    secret = await kube.read_secret("gate-cam-17-credentials")
    assert secret == {"password": device["password"], "deviceId": device["device_id"]}

    body = await synced(kube, "gate-cam-17")
    assert body["status"]["deviceId"] == device["device_id"]  # the operator adopted the id
    assert (await sqlite_store.devices.list(DeviceFilter(), 1, 10))[1] == 1
    hashed = await stored_secret(sqlite_store, int(device["device_id"]))
    assert bcrypt.checkpw(device["password"].encode(), hashed)


async def test_a_change_over_rest_is_a_merge_patch(
    cluster: kmock.KubernetesEmulator, api: ApiClient, kube: KubeClient
) -> None:
    device = (await api.post("/api/v1/devices", {**REGISTRATION, "name": "Gate camera 17"})).data
    name = device["k8s_name"]
    assert name == f"device-{device['device_id']}"  # the display name is not a resource name
    await synced(kube, name)
    path = f"/api/v1/devices/{device['device_id']}"
    answer = await api.patch(path, {"description": "moved", "eth_mac": None, "password": "x" * 16})
    assert answer.status == 200, answer.body
    assert answer.data["description"] == "moved" and answer.data["eth_mac"] is None

    patches = [r.data for r in requests_to(cluster, DEVICE, "patch") if "spec" in r.data]
    assert patches[-1]["spec"] == {"description": "moved", "hardware": {"ethMac": None}}
    body = await kube.get(DEVICES, name)
    assert "ethMac" not in body["spec"]["hardware"] and body["spec"]["description"] == "moved"
    assert (await kube.read_secret(f"{name}-credentials"))["password"] == "x" * 16


async def test_a_deletion_over_rest_deletes_the_resource(
    api: ApiClient, kube: KubeClient, sqlite_store: Store
) -> None:
    device = (await api.post("/api/v1/devices", REGISTRATION)).data
    await synced(kube, "gate-cam-17")
    answer = await api.delete(f"/api/v1/devices/{device['device_id']}")
    assert answer.status == 200
    assert (await api.get(f"/api/v1/devices/{device['device_id']}")).status == 404

    await eventually(lambda: _gone(kube, DEVICES, "gate-cam-17"))  # the finalizer let it go


async def test_a_device_applied_with_kubectl_is_served_over_rest(
    api: ApiClient, kube: KubeClient
) -> None:
    await kube.create(DEVICES, device_body("cam-42", description="applied"))
    device_id = (await synced(kube, "cam-42"))["status"]["deviceId"]
    answer = await api.get(f"/api/v1/devices/{device_id}")
    assert answer.data["k8s_name"] == "cam-42" and answer.data["description"] == "applied"
    listed = await api.get("/api/v1/devices", params={"q": "cam-42"})
    assert [d["device_id"] for d in listed.data["items"]] == [device_id]


async def test_memberships_over_rest_become_spec_groups(
    cluster: kmock.KubernetesEmulator, api: ApiClient, kube: KubeClient
) -> None:
    device = (await api.post("/api/v1/devices", REGISTRATION)).data
    group = (await api.post("/api/v1/groups", {"name": "Gate cameras"})).data
    assert group["k8s_name"] == f"group-{group['group_id']}"
    [created] = requests_to(cluster, DEVICE_GROUP, "post")
    assert created.data["spec"] == {"displayName": "Gate cameras", "description": ""}
    await synced(kube, "gate-cam-17")

    member = f"/api/v1/groups/{group['group_id']}/devices/{device['device_id']}"
    assert (await api.put(member)).status == 200
    assert (await kube.get(DEVICES, "gate-cam-17"))["spec"]["groups"] == [group["k8s_name"]]
    assert (await api.delete(member)).status == 200
    assert (await kube.get(DEVICES, "gate-cam-17"))["spec"]["groups"] == []

    assert (await api.put(member)).status == 200
    assert (await api.delete(f"/api/v1/groups/{group['group_id']}")).status == 200
    assert (await kube.get(DEVICES, "gate-cam-17"))["spec"]["groups"] == []
    await eventually(lambda: _gone(kube, DEVICE_GROUPS, group["k8s_name"]))


async def test_a_name_taken_by_another_resource_is_409(api: ApiClient, kube: KubeClient) -> None:
    await kube.create(DEVICES, device_body("gate-cam-17"))
    answer = await api.post("/api/v1/devices", REGISTRATION)
    assert answer.failure(409, "DEVICEOP_ERROR")


async def test_without_the_kubernetes_api_writes_fail_and_nothing_is_stored(
    sqlite_store: Store, tmp_path: Path
) -> None:
    dead = write_kubeconfig(tmp_path / "dead-kubeconfig", "http://127.0.0.1:9")
    kube = await KubeClient.connect(str(dead), NAMESPACE)
    try:
        async with running_api(sqlite_store, "t", mirror=KubeMirror(kube, sqlite_store)) as api:
            answer = await api.post("/api/v1/devices", REGISTRATION)
            assert "Kubernetes API unavailable" in answer.failure(503, "DATABASE_ERROR")
            assert (await api.get("/api/v1/devices")).data["total"] == 0
    finally:
        await kube.close()


async def _gone(kube: KubeClient, plural: str, name: str) -> bool:
    try:
        await kube.get(plural, name)
    except KubeNotFound:
        return True
    return False
