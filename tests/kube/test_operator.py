"""The operator against kmock: Device and DeviceGroup resources into the database."""

from __future__ import annotations

import json
from typing import Any

import bcrypt
import kmock
import kopf
import websockets

from edgefleet.agent import protocol
from edgefleet.controller.device_link import NoDeviceLink
from edgefleet.controller.kube.client import KubeClient, KubeNotFound
from edgefleet.controller.kube.operator import Reconciler, running_operator
from edgefleet.controller.kube.resources import DEVICE_GROUPS, DEVICES
from edgefleet.controller.store import DeviceFilter, EventFilter, Store
from edgefleet.southbound.server import Southbound
from tests.agent.conftest import SOUTHBOUND
from tests.conftest import eventually
from tests.kube.conftest import (
    DEVICE,
    NAMESPACE,
    SECRET,
    device_body,
    group_body,
    requests_to,
)


async def synced(kube: KubeClient, name: str, plural: str = DEVICES) -> dict[str, Any]:
    """The resource once the operator has reconciled it (Synced True)."""

    async def check() -> dict[str, Any] | None:
        body = await kube.get(plural, name)
        conditions = (body.get("status") or {}).get("conditions") or []
        return body if any(c["status"] == "True" for c in conditions) else None

    return await eventually(check)


async def stored_secret(store: Store, device_id: int) -> bytes:
    return (await store.devices.secret_of(device_id)).encode()


async def test_a_new_device_gets_an_id_a_secret_and_a_row(
    cluster: kmock.KubernetesEmulator, kube: KubeClient, operator: Reconciler, sqlite_store: Store
) -> None:
    await kube.create(DEVICES, device_body("cam-1", description="north gate"))
    body = await synced(kube, "cam-1")

    device_id = int(body["status"]["deviceId"])
    assert body["status"]["credentialsSecret"] == "cam-1-credentials"
    row = await sqlite_store.devices.get(device_id)
    assert (row["name"], row["type"], row["description"]) == (
        "Camera cam-1",
        "camera",
        "north gate",
    )
    assert (row["hardware_sn"], row["k8s_name"], row["k8s_namespace"]) == (
        "SN-cam-1",
        "cam-1",
        NAMESPACE,
    )

    secret = await kube.read_secret("cam-1-credentials")
    assert secret is not None and secret["deviceId"] == str(device_id)
    assert bcrypt.checkpw(secret["password"].encode(), await stored_secret(sqlite_store, device_id))
    [created] = requests_to(cluster, SECRET, "post")
    owner = created.data["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Device",
        "cam-1",
        body["metadata"]["uid"],
    )

    assert operator.metrics.reconciles.labels("Device", "ok")._value.get() >= 1
    # kopf's own bookkeeping lives in annotations; status holds only our fields.
    assert set(body["status"]) == {"deviceId", "credentialsSecret", "conditions"}
    assert any(key.startswith("edgefleet.io/") for key in body["metadata"]["annotations"])


async def test_spec_groups_become_memberships(
    kube: KubeClient, operator: Reconciler, sqlite_store: Store
) -> None:
    await kube.create(DEVICE_GROUPS, group_body("gate-cameras", displayName="Gate cameras"))
    await kube.create(DEVICE_GROUPS, group_body("night", description="night shift"))
    await synced(kube, "gate-cameras", DEVICE_GROUPS)
    await synced(kube, "night", DEVICE_GROUPS)
    await kube.create(DEVICES, device_body("cam-2", groups=["gate-cameras"]))
    device_id = int((await synced(kube, "cam-2"))["status"]["deviceId"])

    async def group_names() -> list[str]:
        return sorted(g["name"] for g in await sqlite_store.groups.of_device(device_id))

    assert await group_names() == ["Gate cameras"]
    await kube.patch(DEVICES, "cam-2", {"spec": {"groups": ["night"]}})
    await eventually(lambda: _equals(group_names(), ["night"]))
    events = [
        e["event"] for e in (await sqlite_store.events.list(device_id, EventFilter(), 1, 50))[0]
    ]
    assert events.count("group_joined") == 2 and events.count("group_left") == 1

    async def counts() -> list[int | None]:
        bodies = [await kube.get(DEVICE_GROUPS, name) for name in ("gate-cameras", "night")]
        return [(body.get("status") or {}).get("deviceCount") for body in bodies]

    await eventually(lambda: _equals(counts(), [0, 1]))  # kubectl get efgroup shows it


async def test_a_device_waits_for_a_group_that_does_not_exist_yet(
    kube: KubeClient, operator: Reconciler, sqlite_store: Store
) -> None:
    await kube.create(DEVICES, device_body("cam-3", groups=["later"]))

    async def waiting() -> dict[str, Any] | None:
        status = (await kube.get(DEVICES, "cam-3")).get("status") or {}
        conditions = status.get("conditions") or []
        return (
            status if any(c["message"] == "groups not found: later" for c in conditions) else None
        )

    status = await eventually(waiting)
    device_id = int(status["deviceId"])
    assert await sqlite_store.groups.of_device(device_id) == []  # the row exists meanwhile
    await kube.create(DEVICE_GROUPS, group_body("later"))
    await synced(kube, "cam-3")  # kopf retried it (after 0.2 s here, 10 s by default)
    assert len(await sqlite_store.groups.of_device(device_id)) == 1


async def test_deleting_a_device_removes_its_row_and_finalizer(
    cluster: kmock.KubernetesEmulator, kube: KubeClient, operator: Reconciler, sqlite_store: Store
) -> None:
    await kube.create(DEVICES, device_body("cam-4"))
    body = await synced(kube, "cam-4")
    device_id = int(body["status"]["deviceId"])
    assert body["metadata"]["finalizers"] == ["edgefleet.io/finalizer"]

    await kube.delete(DEVICES, "cam-4")

    async def gone() -> bool:
        try:
            await kube.get(DEVICES, "cam-4")
        except KubeNotFound:
            return True
        return False

    await eventually(gone)
    rows, _ = await sqlite_store.devices.list(DeviceFilter(), 1, 10)
    assert rows == []
    events = [
        e["event"] for e in (await sqlite_store.events.list(device_id, EventFilter(), 1, 50))[0]
    ]
    assert "deleted" in events


async def test_replayed_events_and_a_restart_create_nothing_twice(
    cluster: kmock.KubernetesEmulator,
    kube: KubeClient,
    operator: Reconciler,
    sqlite_store: Store,
) -> None:
    await kube.create(DEVICES, device_body("cam-5"))
    body = await synced(kube, "cam-5")
    device_id = int(body["status"]["deviceId"])

    # A second operator resumes every object, like a restarted pod: it finds the
    # row, the Secret and the status as they should be and writes nothing.
    writes_before = len(requests_to(cluster, DEVICE, "patch"))
    assert operator.runs["Device", "resume", False] == 0
    async with running_operator(operator, NAMESPACE):

        async def resumed() -> bool:
            return operator.runs["Device", "resume", False] == 1

        await eventually(resumed)  # the one Device, resumed, its status left alone
    assert not [run for run in operator.runs if run[1] == "resume" and run[2]]
    rows, total = await sqlite_store.devices.list(DeviceFilter(), 1, 10)
    assert total == 1 and rows[0]["device_id"] == device_id
    assert len(requests_to(cluster, SECRET, "post")) == 1
    status_writes = [
        r for r in requests_to(cluster, DEVICE, "patch")[writes_before:] if r.data.get("status")
    ]
    assert status_writes == []
    events = [
        e["event"] for e in (await sqlite_store.events.list(device_id, EventFilter(), 1, 50))[0]
    ]
    assert events == ["registered"]


async def test_a_hardware_clash_is_reported_in_the_status(
    kube: KubeClient, operator: Reconciler
) -> None:
    await kube.create(DEVICES, device_body("cam-6"))
    await synced(kube, "cam-6")
    twin = device_body("cam-7")
    twin["spec"]["hardware"] = {"sn": "SN-cam-6", "model": "ModelB"}
    await kube.create(DEVICES, twin)

    async def refused() -> str | None:
        conditions = ((await kube.get(DEVICES, "cam-7")).get("status") or {}).get("conditions")
        return conditions and conditions[0]["status"] == "False" and conditions[0]["message"]

    assert "already exists" in await eventually(refused)


async def test_a_device_group_mirrors_into_groups(
    kube: KubeClient, operator: Reconciler, sqlite_store: Store
) -> None:
    await kube.create(DEVICE_GROUPS, group_body("rail-sensors", displayName="Rail sensors"))
    body = await synced(kube, "rail-sensors", DEVICE_GROUPS)
    group = await sqlite_store.groups.get(int(body["status"]["groupId"]))
    assert (group["name"], group["k8s_name"]) == ("Rail sensors", "rail-sensors")
    await kube.patch(DEVICE_GROUPS, "rail-sensors", {"spec": {"description": "line 3"}})
    await eventually(lambda: _equals(_description(sqlite_store, group["group_id"]), "line 3"))
    await kube.delete(DEVICE_GROUPS, "rail-sensors")
    await eventually(lambda: _equals(_group_count(sqlite_store), 0))


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected


async def _description(store: Store, group_id: int) -> str:
    return (await store.groups.get(group_id))["description"]


async def _group_count(store: Store) -> int:
    return (await store.groups.list(None, 1, 10))[1]


async def test_the_same_event_handled_twice_writes_nothing_the_second_time(
    cluster: kmock.KubernetesEmulator, kube: KubeClient, sqlite_store: Store, ids: Any
) -> None:
    """The handler itself, without kopf's bookkeeping: a replay must find nothing to do."""
    reconciler = Reconciler(sqlite_store, kube, NoDeviceLink(), ids, bcrypt_rounds=4)
    await kube.create(DEVICE_GROUPS, group_body("night"))
    await reconciler.group_changed(
        body=kopf.Body(await kube.get(DEVICE_GROUPS, "night")),
        patch=kopf.Patch(),
        name="night",
        namespace=NAMESPACE,
    )
    await kube.create(DEVICES, device_body("cam-8", groups=["night"]))

    async def handle() -> dict[str, Any]:
        patch = kopf.Patch()
        body = kopf.Body(await kube.get(DEVICES, "cam-8"))
        await reconciler.device_changed(body=body, patch=patch, name="cam-8", namespace=NAMESPACE)
        status = dict(patch.get("status") or {})
        if status:
            await kube.patch_status(DEVICES, "cam-8", status)  # as kopf would
        return status

    assert set(await handle()) == {"deviceId", "credentialsSecret", "conditions"}
    served = len(cluster.served)
    assert await handle() == {}
    assert {r.method for r in cluster.served[served:]} == {kmock.method.GET}
    device_id = int((await kube.get(DEVICES, "cam-8"))["status"]["deviceId"])
    events = [
        e["event"] for e in (await sqlite_store.events.list(device_id, EventFilter(), 1, 50))[0]
    ]
    assert sorted(events) == ["group_joined", "registered"]


async def test_editing_the_secret_rotates_the_password(
    cluster: kmock.KubernetesEmulator, kube: KubeClient, operator: Reconciler, sqlite_store: Store
) -> None:
    await kube.create(DEVICES, device_body("cam-10"))
    device_id = int((await synced(kube, "cam-10"))["status"]["deviceId"])
    [created] = requests_to(cluster, SECRET, "post")
    assert created.data["metadata"]["labels"] == {"edgefleet.io/device": "cam-10"}

    await kube.patch_secret("cam-10-credentials", data={"password": "rotated-by-kubectl"})

    async def rotated() -> bool:
        hashed = await stored_secret(sqlite_store, device_id)
        return bcrypt.checkpw(b"rotated-by-kubectl", hashed)

    await eventually(rotated)
    events = [e for e in (await sqlite_store.events.list(device_id, EventFilter(), 1, 50))[0]]
    assert [e["detail"] for e in events if e["event"] == "updated"] == [{"fields": ["password"]}]


async def test_a_device_adopts_the_id_and_password_of_an_existing_secret(
    kube: KubeClient, operator: Reconciler, sqlite_store: Store
) -> None:
    """Credentials provisioned beforehand (or left by a run interrupted before it
    wrote the status) are kept: the device in the field already has them."""
    await kube.create_secret(
        "cam-11-credentials", {"password": "provisioned-at-the-factory", "deviceId": "4242"}
    )
    await kube.create(DEVICES, device_body("cam-11"))
    assert (await synced(kube, "cam-11"))["status"]["deviceId"] == "4242"
    assert bcrypt.checkpw(b"provisioned-at-the-factory", await stored_secret(sqlite_store, 4242))


async def test_editing_the_secret_ends_the_devices_session_tokens(
    kube: KubeClient, operator: Reconciler, sqlite_store: Store
) -> None:
    """``kubectl edit secret cam-8-credentials``: the operator stores the new hash, and
    a token issued with the old password no longer logs the device in."""
    southbound = Southbound(SOUTHBOUND, sqlite_store, bcrypt_rounds=4)
    await southbound.start()
    try:
        await kube.create(DEVICES, device_body("cam-8"))
        device_id = (await synced(kube, "cam-8"))["status"]["deviceId"]
        password = (await kube.read_secret("cam-8-credentials"))["password"]  # type: ignore[index]
        url = f"ws://127.0.0.1:{southbound.port}/ws"

        async def log_in(**secret: str) -> dict[str, Any]:
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"device_id": device_id, **secret}))
                return dict(json.loads(await ws.recv()))

        token = (await log_in(password=password))["data"]["token"]
        assert (await log_in(token=token))["status"] == "success"
        edits = operator.runs["Secret", "event", False]
        await kube.patch_secret("cam-8-credentials", {"password": "an-edited-password"})

        async def rehashed() -> bool:  # the operator has handled the edit
            return operator.runs["Secret", "event", False] > edits and not await _password_is(
                sqlite_store, int(device_id), password
            )

        await eventually(rehashed)
        assert await log_in(token=token) == {"status": "fail", "message": protocol.MSG_BAD_TOKEN}
        assert (await log_in(password="an-edited-password"))["status"] == "success"
    finally:
        await southbound.stop()


async def _password_is(store: Store, device_id: int, password: str) -> bool:
    return bcrypt.checkpw(password.encode(), await stored_secret(store, device_id))
