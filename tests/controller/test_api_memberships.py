"""Memberships between devices and groups, from both sides."""

from __future__ import annotations

from tests.api_client import ApiClient


def member_path(group: dict, device: dict) -> str:
    return f"/api/v1/groups/{group['group_id']}/devices/{device['device_id']}"


async def test_add_query_remove_one_membership(api: ApiClient) -> None:
    group, device = await api.create_group("g"), await api.register()
    path = member_path(group, device)
    assert (await api.get(path)).data == {"member": False}
    assert (await api.put(path)).data == {"member": True}
    assert (await api.put(path)).data == {"member": True}  # idempotent
    assert (await api.get(path)).data == {"member": True}
    assert (await api.get(f"/api/v1/groups/{group['group_id']}")).data["device_count"] == 1

    assert (await api.delete(path)).data == {"member": False}
    (await api.delete(path)).failure(404, "RELATIONOP_ERROR")
    events = (await api.get(f"/api/v1/devices/{device['device_id']}/events")).data["items"]
    assert [e["event"] for e in events] == ["group_left", "group_joined", "registered"]


async def test_membership_with_unknown_side_is_404(api: ApiClient) -> None:
    group, device = await api.create_group("g"), await api.register()
    ghost_group, ghost_device = {"group_id": "1"}, {"device_id": "1"}
    for method in (api.get, api.put, api.delete):
        (await method(member_path(ghost_group, device))).failure(404, "GROUPOP_ERROR")
        (await method(member_path(group, ghost_device))).failure(404, "DEVICEOP_ERROR")


async def test_replace_and_clear_a_devices_groups(api: ApiClient) -> None:
    a, b, c = [await api.create_group(n) for n in ("a", "b", "c")]
    device = await api.register()
    path = f"/api/v1/devices/{device['device_id']}/groups"
    await api.put(member_path(a, device))

    replaced = await api.put(path, {"group_ids": [b["group_id"], c["group_id"]]})
    assert [g["name"] for g in replaced.data["items"]] == ["b", "c"]
    assert [g["name"] for g in (await api.get(path)).data["items"]] == ["b", "c"]

    unknown = await api.put(path, {"group_ids": [a["group_id"], "77"]})
    unknown.failure(404, "GROUPOP_ERROR")
    assert [g["name"] for g in (await api.get(path)).data["items"]] == ["b", "c"]

    bad = await api.put(path, {"group_ids": [int(a["group_id"])]})
    assert "'group_ids.0'" in bad.failure(400, "GENERAL_ERROR")

    assert (await api.delete(path)).data == {"removed": 2, "deleted_devices": 0}
    assert (await api.get(path)).data["items"] == []
    (await api.get("/api/v1/devices/5/groups")).failure(404, "DEVICEOP_ERROR")


async def test_group_devices_list_and_clear(api: ApiClient) -> None:
    group = await api.create_group("g")
    members = [await api.register(name=f"m{i}") for i in range(3)]
    outsider = await api.register(name="outsider")
    for device in members:
        await api.put(member_path(group, device))
    path = f"/api/v1/groups/{group['group_id']}/devices"

    page = (await api.get(path, params={"per_page": 2})).data
    assert page["total"] == 3 and len(page["items"]) == 2
    assert (await api.delete(path)).data == {"removed": 3, "deleted_devices": 0}
    assert (await api.get(path)).data["total"] == 0
    for device in members:
        assert (await api.get(f"/api/v1/devices/{device['device_id']}")).status == 200
    (await api.get("/api/v1/groups/3/devices")).failure(404, "GROUPOP_ERROR")
    assert (await api.get(f"/api/v1/devices/{outsider['device_id']}")).status == 200


async def test_clear_group_can_delete_its_devices(api: ApiClient) -> None:
    group = await api.create_group("g")
    members = [await api.register(name=f"m{i}") for i in range(2)]
    outsider = await api.register(name="outsider")
    for device in members:
        await api.put(member_path(group, device))
    path = f"/api/v1/groups/{group['group_id']}/devices"

    answer = await api.delete(path, params={"delete_devices": "true"})
    assert answer.data == {"removed": 2, "deleted_devices": 2}
    for device in members:
        (await api.get(f"/api/v1/devices/{device['device_id']}")).failure(404, "DEVICEOP_ERROR")
    assert (await api.get(f"/api/v1/devices/{outsider['device_id']}")).status == 200
    assert (await api.get(f"/api/v1/groups/{group['group_id']}")).status == 200
    bad = await api.delete(path, params={"delete_devices": "perhaps"})
    assert "'delete_devices'" in bad.failure(400, "GENERAL_ERROR")
