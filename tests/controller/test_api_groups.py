"""Groups: create, read, list, change, delete."""

from __future__ import annotations

from tests.api_client import ApiClient

GROUPS = "/api/v1/groups"


async def test_group_lifecycle(api: ApiClient) -> None:
    group = await api.create_group("gate-cameras", description="north and south gates")
    assert group["group_id"].isdigit()
    assert group["device_count"] == 0
    path = f"{GROUPS}/{group['group_id']}"
    assert (await api.get(path)).data == group

    changed = (await api.patch(path, {"description": "all gates"})).data
    assert changed["description"] == "all gates" and changed["name"] == "gate-cameras"

    assert (await api.delete(path)).data == {"deleted": True}
    (await api.get(path)).failure(404, "GROUPOP_ERROR")
    (await api.delete(path)).failure(404, "GROUPOP_ERROR")
    (await api.patch(path, {"name": "x"})).failure(404, "GROUPOP_ERROR")


async def test_group_names_are_unique(api: ApiClient) -> None:
    await api.create_group("depot")
    other = await api.create_group("yard")
    (await api.post(GROUPS, {"name": "depot"})).failure(409, "GROUPOP_ERROR")
    (await api.patch(f"{GROUPS}/{other['group_id']}", {"name": "depot"})).failure(
        409, "GROUPOP_ERROR"
    )


async def test_invalid_groups_name_the_field(api: ApiClient) -> None:
    assert "'name'" in (await api.post(GROUPS, {})).failure(400, "GENERAL_ERROR")
    assert "'name'" in (await api.post(GROUPS, {"name": ""})).failure(400, "GENERAL_ERROR")
    group = await api.create_group("g")
    answer = await api.patch(f"{GROUPS}/{group['group_id']}", {"description": 3})
    assert "'description'" in answer.failure(400, "GENERAL_ERROR")
    (await api.get(f"{GROUPS}/x1")).failure(400, "GENERAL_ERROR")


async def test_list_groups_by_name_with_pages_and_text(api: ApiClient) -> None:
    for name in ("c-gates", "a-depot", "b-gates-south", "d-yard"):
        await api.create_group(name)
    first = (await api.get(GROUPS, params={"per_page": 2})).data
    assert [g["name"] for g in first["items"]] == ["a-depot", "b-gates-south"]
    assert first["total"] == 4
    second = (await api.get(GROUPS, params={"per_page": 2, "page": 2})).data
    assert [g["name"] for g in second["items"]] == ["c-gates", "d-yard"]
    found = (await api.get(GROUPS, params={"q": "gates"})).data
    assert [g["name"] for g in found["items"]] == ["b-gates-south", "c-gates"]
    assert found["total"] == 2


async def test_deleting_a_group_keeps_its_devices(api: ApiClient) -> None:
    group = await api.create_group("g")
    device = await api.register()
    await api.put(f"{GROUPS}/{group['group_id']}/devices/{device['device_id']}")
    await api.delete(f"{GROUPS}/{group['group_id']}")
    assert (await api.get(f"/api/v1/devices/{device['device_id']}")).status == 200
    assert (await api.get(f"/api/v1/devices/{device['device_id']}/groups")).data["items"] == []
    events = (await api.get(f"/api/v1/devices/{device['device_id']}/events")).data["items"]
    assert events[0]["event"] == "group_left"
    assert events[0]["detail"] == {"group_id": group["group_id"], "group": "g"}
