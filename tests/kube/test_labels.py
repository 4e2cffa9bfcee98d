"""Labels and dynamic groups in Kubernetes mode, against kmock: a Device's
``metadata.labels`` and a DeviceGroup's ``spec.selector``, from kubectl into the
database and from the REST API into the resources."""

from __future__ import annotations

import asyncio
from typing import Any

import kmock

from edgefleet.controller.kube.client import KubeClient
from edgefleet.controller.kube.group_counts import GroupCounts
from edgefleet.controller.kube.mirror import KubeMirror
from edgefleet.controller.kube.operator import Reconciler
from edgefleet.controller.kube.resources import DEVICE_GROUPS, DEVICES
from edgefleet.controller.store import Store
from tests.api_client import ApiClient, running_api
from tests.conftest import eventually
from tests.kube.conftest import DEVICE, device_body, group_body, requests_to
from tests.kube.test_operator import synced


def labelled(name: str, labels: dict[str, str], groups: list[str] | None = None) -> dict:
    body = device_body(name, groups)
    body["metadata"]["labels"] = labels
    return body


async def device_id_of(kube: KubeClient, name: str) -> int:
    return int((await synced(kube, name))["status"]["deviceId"])


async def members(store: Store, group_id: int) -> set[int]:
    return set(await store.groups.member_ids(group_id))


async def test_metadata_labels_and_spec_selector_reach_the_database(
    kube: KubeClient, operator: Reconciler, sqlite_store: Store
) -> None:
    await kube.create(DEVICE_GROUPS, group_body("edge", selector="tier in (edge)"))
    group_id = int((await synced(kube, "edge", DEVICE_GROUPS))["status"]["groupId"])
    assert (await sqlite_store.groups.get(group_id))["selector"] == "tier in (edge)"
    await kube.create(DEVICES, labelled("cam-1", {"site": "chengdu", "tier": "edge"}))
    await kube.create(DEVICES, labelled("cam-2", {"site": "beijing"}, groups=["edge"]))
    first, second = await device_id_of(kube, "cam-1"), await device_id_of(kube, "cam-2")
    assert (await sqlite_store.devices.get(first))["labels"] == {"site": "chengdu", "tier": "edge"}
    # cam-2 names the group in spec.groups, cam-1 matches its selector: both members.
    await eventually(lambda: _is(members(sqlite_store, group_id), {first, second}))

    # kubectl label cam-1 tier- ; kubectl label cam-2 tier=edge
    await kube.patch(DEVICES, "cam-1", {"metadata": {"labels": {"tier": None}}})
    await eventually(lambda: _is(_labels(sqlite_store, first), {"site": "chengdu"}))
    await eventually(lambda: _is(members(sqlite_store, group_id), {second}))
    await kube.patch(DEVICE_GROUPS, "edge", {"spec": {"selector": "site=chengdu"}})
    await eventually(lambda: _is(members(sqlite_store, group_id), {first, second}))
    # The group's count in its status follows the selector too.
    await eventually(lambda: _is(_device_count(kube, "edge"), 2))


async def test_an_invalid_spec_selector_is_reported_in_the_status(
    kube: KubeClient, operator: Reconciler
) -> None:
    await kube.create(DEVICE_GROUPS, group_body("broken", selector="tier in (edge"))

    async def reported() -> str | None:
        body = await kube.get(DEVICE_GROUPS, "broken")
        conditions = (body.get("status") or {}).get("conditions") or []
        return next((c.get("message") for c in conditions if c["status"] == "False"), None)

    message = await eventually(reported)
    assert message.startswith("spec.selector: at the end: expected ')'"), message


async def test_labels_over_rest_are_the_devices_metadata_labels(
    cluster: kmock.KubernetesEmulator, api: ApiClient, kube: KubeClient
) -> None:
    body = {"name": "cam-9", "hardware_sn": "SN9", "hardware_model": "M", "labels": {"a": "1"}}
    device = (await api.post("/api/v1/devices", body)).data
    [created] = requests_to(cluster, DEVICE, "post")
    assert created.data["metadata"]["labels"] == {"a": "1"}
    await synced(kube, "cam-9")

    path = f"/api/v1/devices/{device['device_id']}"
    answer = await api.patch(path, {"labels": {"b": "2"}})
    assert answer.status == 200 and answer.data["labels"] == {"b": "2"}, answer.body
    patches = [r.data for r in requests_to(cluster, DEVICE, "patch") if "metadata" in r.data]
    assert patches[-1]["metadata"]["labels"] == {"a": None, "b": "2"}  # a merge patch
    assert (await kube.get(DEVICES, "cam-9"))["metadata"]["labels"] == {"b": "2"}


async def test_a_dynamic_group_over_rest_is_a_device_group_with_a_selector(
    api: ApiClient, kube: KubeClient, sqlite_store: Store
) -> None:
    device = (
        await api.post(
            "/api/v1/devices",
            {"name": "cam-7", "hardware_sn": "SN7", "hardware_model": "M", "labels": {"t": "e"}},
        )
    ).data
    group = (await api.post("/api/v1/groups", {"name": "edge", "selector": "t=e"})).data
    body = await synced(kube, "edge", DEVICE_GROUPS)
    assert body["spec"]["selector"] == "t=e"
    assert await members(sqlite_store, int(group["group_id"])) == {int(device["device_id"])}
    # Putting a matched device in by hand is refused, and spec.groups stays empty.
    path = f"/api/v1/groups/{group['group_id']}/devices/{device['device_id']}"
    (await api.put(path)).failure(409, "RELATIONOP_ERROR")
    assert (await kube.get(DEVICES, "cam-7"))["spec"]["groups"] == []
    cleared = await api.patch(f"/api/v1/groups/{group['group_id']}", {"selector": None})
    assert cleared.data["device_count"] == 0
    assert "selector" not in (await kube.get(DEVICE_GROUPS, "edge"))["spec"]


async def _is(value: Any, expected: Any) -> bool:
    return await value == expected


async def _labels(store: Store, device_id: int) -> dict[str, str]:
    return (await store.devices.get(device_id))["labels"]


async def _device_count(kube: KubeClient, name: str) -> int | None:
    return ((await kube.get(DEVICE_GROUPS, name)).get("status") or {}).get("deviceCount")


async def test_rest_writes_keep_the_device_count_of_the_dynamic_groups_a_device_moves_between(
    kube: KubeClient, sqlite_store: Store
) -> None:
    """The REST API writes the resource, then the database: the operator, woken by
    the resource, usually finds the database changed already and sees no member
    come or go. So the REST side has the counts refreshed itself. No operator runs
    here, so every count below was written on the REST API's word alone."""
    counts = GroupCounts(sqlite_store, kube, pause=0.05)
    counting = asyncio.create_task(counts.run())
    mirror = KubeMirror(kube, sqlite_store, counts)
    try:
        async with running_api(sqlite_store, "t", mirror=mirror) as api:
            edge = await api.create_group("edge", selector="tier=edge")
            await api.create_group("core", selector="tier=core")
            await api.register(name="cam-a", labels={"tier": "edge"})
            cam_b = await api.register(name="cam-b", labels={"tier": "core"})
            # Registered with its labels: in its group at once, and counted.
            await eventually(lambda: _is(_device_count(kube, "edge"), 1))
            await eventually(lambda: _is(_device_count(kube, "core"), 1))

            path = f"/api/v1/devices/{cam_b['device_id']}"
            moved = await api.patch(path, {"labels": {"tier": "edge"}})
            assert moved.status == 200, moved.body
            await eventually(lambda: _is(_device_count(kube, "edge"), 2))
            await eventually(lambda: _is(_device_count(kube, "core"), 0))

            # The group's selector edited over REST: the count follows too.
            await api.patch(f"/api/v1/groups/{edge['group_id']}", {"selector": "tier=none"})
            await eventually(lambda: _is(_device_count(kube, "edge"), 0))
    finally:
        counting.cancel()
        await asyncio.gather(counting, return_exceptions=True)
