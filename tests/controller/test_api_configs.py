"""Desired configuration over the REST API: versions, merge patches, If-Match, the
size limit, groups merged in name order, scope, audit and the device log, and
writes that change nothing taking no version."""

from __future__ import annotations

import asyncio

from tests.api_client import ApiClient


def config_path(device: dict) -> str:
    return f"/api/v1/devices/{device['device_id']}/config"


def group_config_path(group: dict) -> str:
    return f"/api/v1/groups/{group['group_id']}/config"


async def test_put_patch_and_read_a_devices_configuration(api: ApiClient) -> None:
    device = await api.register()
    path = config_path(device)
    empty = (await api.get(path)).data
    assert empty["desired"] == {} and empty["desired_version"] == 0
    assert empty["in_sync"] is False and empty["reported"] is None

    put = (await api.put(path, {"config": {"exposure": 30, "upload": {"images": True}}})).data
    assert put["desired_version"] == 1
    patched = await api.patch(path, {"config": {"upload": {"images": None, "video": True}}})
    assert patched.data["desired"] == {"exposure": 30, "upload": {"video": True}}
    assert patched.data["desired_version"] == 2
    read = (await api.get(path)).data
    assert read["desired"] == {"exposure": 30, "upload": {"video": True}}
    assert read["updated_at"].endswith("Z")

    events = (await api.get(f"/api/v1/devices/{device['device_id']}/events")).data["items"]
    assert [e["event"] for e in events][:2] == ["config_changed", "config_changed"]
    audit = (await api.get("/api/v1/audit?action=patch_device_config")).data["items"]
    assert audit[0]["target_id"] == device["device_id"] and audit[0]["result"] == "success"


async def test_stale_if_match_is_412_and_changes_nothing(api: ApiClient) -> None:
    device = await api.register()
    path = config_path(device)
    await api.put(path, {"config": {"a": 1}})
    stale = await api.put(path, {"config": {"a": 2}}, headers={"If-Match": "0"})
    assert "current version is 1" in stale.failure(412, "CONFIG_ERROR")
    assert (await api.get(path)).data["desired"] == {"a": 1}
    fresh = await api.patch(path, {"config": {"b": 2}}, headers={"If-Match": '"1"'})
    assert fresh.data["desired"] == {"a": 1, "b": 2}
    bad = await api.put(path, {"config": {}}, headers={"If-Match": "soon"})
    assert "If-Match" in bad.failure(400, "GENERAL_ERROR")
    weak = await api.put(path, {"config": {"c": 3}}, headers={"if-match": 'W/"2"'})
    assert weak.data["desired_version"] == 3  # header names are case-insensitive
    assert (await api.get(path)).data["desired"] == {"c": 3}


async def test_a_write_that_changes_nothing_keeps_the_version(api: ApiClient) -> None:
    device = await api.register()
    path = config_path(device)
    assert (await api.put(path, {"config": {"a": 1, "b": {"c": 2}}})).data["desired_version"] == 1
    same = [
        await api.put(path, {"config": {"b": {"c": 2}, "a": 1}}),
        await api.patch(path, {"config": {"a": 1}}),
        await api.patch(path, {"config": {"gone": None}}),
        await api.put(path, {"config": {"a": 1, "b": {"c": 2}}}, headers={"If-Match": "1"}),
    ]
    for answer in same:
        assert answer.status == 200, answer.body
        assert answer.data["desired"] == {"a": 1, "b": {"c": 2}}
        assert answer.data["desired_version"] == 1
    # A stale If-Match is refused whatever the body: its writer read an older document.
    stale = await api.put(path, {"config": {"a": 1, "b": {"c": 2}}}, headers={"If-Match": "0"})
    assert "current version is 1" in stale.failure(412, "CONFIG_ERROR")
    # To a device, true is not 1.
    changed = await api.put(path, {"config": {"a": True, "b": {"c": 2}}})
    assert changed.data["desired_version"] == 2

    events = (await api.get(f"/api/v1/devices/{device['device_id']}/events")).data["items"]
    assert [e["event"] for e in events].count("config_changed") == 2
    # Each request is on record; only those that changed the document name it.
    audit = (await api.get("/api/v1/audit?action=put_device_config")).data["items"]
    assert [(entry["result"], entry["fields"]) for entry in audit] == [
        ("success", ["config"]), ("failure", ["config"]), ("success", []),
        ("success", []), ("success", ["config"]),
    ]  # fmt: skip


async def test_a_group_write_that_changes_nothing_reaches_no_member(api: ApiClient) -> None:
    group, device = await api.create_group("cameras"), await api.register()
    await api.put(f"/api/v1/groups/{group['group_id']}/devices/{device['device_id']}")
    path = group_config_path(group)
    assert (await api.put(path, {"config": {"fps": 15}})).data["version"] == 1
    again = await api.put(path, {"config": {"fps": 15}})
    assert again.status == 200 and again.data["version"] == 1
    assert (await api.patch(path, {"config": {"fps": 15}})).data["version"] == 1
    effective = (await api.get(config_path(device) + "?effective=true")).data
    assert effective["desired"] == {"fps": 15} and effective["desired_version"] == 1
    events = (await api.get(f"/api/v1/devices/{device['device_id']}/events")).data["items"]
    assert [e["event"] for e in events].count("config_changed") == 1
    # A group whose document was never set, written empty: nothing to change either.
    empty = await api.create_group("empty")
    assert (await api.put(group_config_path(empty), {"config": {}})).data["version"] == 0


async def test_racing_identical_writes_take_one_version(api: ApiClient) -> None:
    device, group = await api.register(), await api.create_group("racing")
    device_path, group_path = config_path(device), group_config_path(group)
    answers = await asyncio.gather(
        *(api.put(device_path, {"config": {"exposure": 30}}) for _ in range(6)),
        *(api.put(group_path, {"config": {"fps": 5}}) for _ in range(6)),
    )
    assert [answer.status for answer in answers] == [200] * 12
    assert {answer.data["desired_version"] for answer in answers[:6]} == {1}
    assert {answer.data["version"] for answer in answers[6:]} == {1}
    events = (await api.get(f"/api/v1/devices/{device['device_id']}/events")).data["items"]
    assert [e["event"] for e in events].count("config_changed") == 1


async def test_the_openapi_document_declares_if_match_on_every_conditional_write(
    api: ApiClient,
) -> None:
    """A client generated from the document can send If-Match: it is a header
    parameter of each configuration write, and of nothing else."""
    document = (await api.get("/api/v1/openapi.json")).body
    conditional = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation["parameters"]:
                if parameter["in"] == "header":
                    conditional[method.upper(), path] = parameter
    assert set(conditional) == {
        (method, f"/api/v1/{kind}/{{{kind[:-1]}_id}}/config")
        for method in ("PUT", "PATCH")
        for kind in ("devices", "groups")
    }
    for parameter in conditional.values():
        assert parameter["name"] == "If-Match" and parameter["required"] is False
        assert parameter["schema"]["type"] == "integer" and parameter["schema"]["minimum"] == 0
        assert "412" in parameter["description"]
    put = document["paths"]["/api/v1/devices/{device_id}/config"]["put"]
    assert "412" in put["responses"]


async def test_a_document_over_32_kib_is_refused(api: ApiClient) -> None:
    device = await api.register()
    big = await api.put(config_path(device), {"config": {"blob": "x" * 33_000}})
    assert "'config'" in big.failure(400, "GENERAL_ERROR")
    assert (await api.get(config_path(device))).data["desired_version"] == 0
    not_object = await api.put(config_path(device), {"config": [1]})
    assert "'config'" in not_object.failure(400, "GENERAL_ERROR")


async def test_effective_configuration_merges_groups_by_name_then_the_device(
    api: ApiClient,
) -> None:
    device = await api.register()
    zeta, alpha = await api.create_group("zeta"), await api.create_group("alpha")
    for group in (zeta, alpha):
        await api.put(f"/api/v1/groups/{group['group_id']}/devices/{device['device_id']}")
    await api.put(group_config_path(zeta), {"config": {"exposure": 10, "site": "z"}})
    await api.put(group_config_path(alpha), {"config": {"exposure": 20, "mode": "a"}})
    await api.put(config_path(device), {"config": {"mode": "mine"}})

    effective = (await api.get(config_path(device) + "?effective=true")).data
    assert effective["desired"] == {"exposure": 10, "site": "z", "mode": "mine"}
    assert effective["groups"] == ["alpha", "zeta"]
    assert effective["desired_version"] == effective["effective_version"] == 3
    own = (await api.get(config_path(device))).data
    assert own["desired"] == {"mode": "mine"} and own["desired_version"] == 1

    group = (await api.patch(group_config_path(zeta), {"config": {"site": None}})).data
    assert group == {**group, "config": {"exposure": 10}, "version": 2}
    assert (await api.get(group_config_path(zeta))).data["config"] == {"exposure": 10}
    stale = await api.put(group_config_path(zeta), {"config": {}}, headers={"If-Match": "1"})
    stale.failure(412, "CONFIG_ERROR")
    effective = (await api.get(config_path(device) + "?effective=true")).data
    assert effective["desired"] == {"exposure": 10, "mode": "mine"}


async def test_unknown_targets_are_404(api: ApiClient) -> None:
    (await api.get("/api/v1/devices/7/config")).failure(404, "DEVICEOP_ERROR")
    (await api.put("/api/v1/devices/7/config", {"config": {}})).failure(404, "DEVICEOP_ERROR")
    (await api.put("/api/v1/groups/7/config", {"config": {}})).failure(404, "GROUPOP_ERROR")
    (await api.get("/api/v1/groups/7/config")).failure(404, "GROUPOP_ERROR")


async def test_a_caller_limited_to_a_group_configures_only_its_devices(api: ApiClient) -> None:
    mine, other = await api.create_group("mine"), await api.create_group("other")
    inside, outside = await api.register(name="in"), await api.register(name="out")
    await api.put(f"/api/v1/groups/{mine['group_id']}/devices/{inside['device_id']}")
    operator = await api.user(
        "scoped-operator", [{"role": "operator", "group_id": mine["group_id"]}]
    )
    assert (await operator.put(config_path(inside), {"config": {"a": 1}})).status == 200
    refused = await operator.put(config_path(outside), {"config": {"a": 1}})
    refused.failure(404, "DEVICEOP_ERROR")
    (await operator.put(group_config_path(other), {"config": {}})).failure(404, "GROUPOP_ERROR")
    viewer = await api.user("viewer-1", [{"role": "viewer", "group_id": None}])
    (await viewer.put(config_path(inside), {"config": {}})).failure(403, "AUTH_ERROR")
    assert (await viewer.get(config_path(inside))).data["desired"] == {"a": 1}
