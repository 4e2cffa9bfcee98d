"""Dynamic groups: a selector on a group makes the matching devices members, and
membership follows the labels; over real HTTP on SQLite and MariaDB."""

from __future__ import annotations

from typing import Any

import pytest

from edgefleet.controller.store import Store
from tests.api_client import ApiClient

GROUPS = "/api/v1/groups"


async def members(api: ApiClient, group: dict[str, Any]) -> list[str]:
    answer = await api.get(f"{GROUPS}/{group['group_id']}/devices", params={"per_page": 500})
    return sorted(d["device_id"] for d in answer.data["items"])


async def relabel(api: ApiClient, device: dict[str, Any], labels: dict[str, str]) -> None:
    answer = await api.patch(f"/api/v1/devices/{device['device_id']}", {"labels": labels})
    assert answer.status == 200, answer.body


async def test_membership_follows_label_changes(api: ApiClient, store: Store) -> None:
    edge = await api.register(labels={"site": "chengdu", "tier": "edge"})
    core = await api.register(labels={"site": "chengdu", "tier": "core"})
    group = await api.create_group("chengdu edge", selector="site = chengdu, tier in (edge)")
    assert group["selector"] == "site=chengdu,tier in (edge)"
    assert group["device_count"] == 1
    assert await members(api, group) == [edge["device_id"]]

    await relabel(api, core, {"site": "chengdu", "tier": "edge"})
    await relabel(api, edge, {"site": "chengdu", "tier": "edge", "retired": "yes"})
    assert await members(api, group) == sorted([edge["device_id"], core["device_id"]])
    await api.patch(f"{GROUPS}/{group['group_id']}", {"selector": "tier=edge,!retired"})
    assert await members(api, group) == [core["device_id"]]
    await relabel(api, core, {})
    assert await members(api, group) == []
    assert (await api.get(f"{GROUPS}/{group['group_id']}")).data["device_count"] == 0

    # A new device that matches joins at registration; the seam group features use
    # (GroupStore.member_ids) sees it.
    late = await api.register(labels={"tier": "edge"})
    assert await store.groups.member_ids(int(group["group_id"])) == [int(late["device_id"])]
    answer = await api.get(f"{GROUPS}/{group['group_id']}/devices/{late['device_id']}")
    assert answer.data == {"member": True}
    groups_of_late = await api.get(f"/api/v1/devices/{late['device_id']}/groups")
    assert [g["group_id"] for g in groups_of_late.data["items"]] == [group["group_id"]]
    log = (await api.get(f"/api/v1/devices/{core['device_id']}/events")).data["items"]
    story = [(e["event"], e["detail"].get("by")) for e in reversed(log)]
    assert story[-4:] == [
        ("updated", None),
        ("group_joined", "selector"),
        ("updated", None),
        ("group_left", "selector"),
    ]


async def test_a_selector_and_members_by_hand_add_up(api: ApiClient) -> None:
    matched = await api.register(labels={"tier": "edge"})
    by_hand = await api.register()
    group = await api.create_group("edge", selector="tier=edge")
    put = await api.put(f"{GROUPS}/{group['group_id']}/devices/{by_hand['device_id']}")
    assert put.status == 200, put.body
    assert await members(api, group) == sorted([matched["device_id"], by_hand["device_id"]])

    # Clearing the selector leaves the members put there by hand.
    cleared = await api.patch(f"{GROUPS}/{group['group_id']}", {"selector": None})
    assert cleared.data["selector"] is None and cleared.data["device_count"] == 1
    assert await members(api, group) == [by_hand["device_id"]]


async def test_a_device_without_labels_matches_a_negative_selector(api: ApiClient) -> None:
    group = await api.create_group("active", selector="!retired,tier notin (core)")
    bare = await api.register()
    await api.register(labels={"retired": "yes"})
    assert await members(api, group) == [bare["device_id"]]


async def test_a_dynamic_member_cannot_be_added_or_removed_by_hand(api: ApiClient) -> None:
    device = await api.register(labels={"tier": "edge"})
    group = await api.create_group("edge", selector="tier=edge")
    path = f"{GROUPS}/{group['group_id']}/devices/{device['device_id']}"
    for answer in (await api.put(path), await api.delete(path)):
        message = answer.failure(409, "RELATIONOP_ERROR")
        assert "matches the selector" in message and "labels" in message
    assert await members(api, group) == [device["device_id"]]
    # Emptying the group or the device's groups ends the memberships by hand only.
    assert (await api.delete(f"{GROUPS}/{group['group_id']}/devices")).data["removed"] == 0
    await api.delete(f"/api/v1/devices/{device['device_id']}/groups")
    assert await members(api, group) == [device["device_id"]]


async def test_a_device_named_by_hand_stays_when_its_labels_stop_matching(
    api: ApiClient,
) -> None:
    device = await api.register(labels={"tier": "edge"})
    group = await api.create_group("edge", selector="tier=edge")
    named = await api.put(
        f"/api/v1/devices/{device['device_id']}/groups", {"group_ids": [group["group_id"]]}
    )
    assert [g["group_id"] for g in named.data["items"]] == [group["group_id"]]
    await relabel(api, device, {})
    assert await members(api, group) == [device["device_id"]]
    await api.delete(f"{GROUPS}/{group['group_id']}/devices/{device['device_id']}")
    assert await members(api, group) == []


@pytest.mark.parametrize(
    ("selector", "problem"),
    [("tier in (edge", "expected ')'"), ("", "an empty selector would match every device")],
)
async def test_a_bad_group_selector_is_refused(api: ApiClient, selector: str, problem: str) -> None:
    answer = await api.post(GROUPS, {"name": "g", "selector": selector})
    message = answer.failure(400, "GENERAL_ERROR")
    assert message.startswith("body field 'selector'") and problem in message, message


async def test_a_dynamic_group_is_a_scope_like_any_other(api: ApiClient) -> None:
    """A caller bound to a dynamic group reaches the devices its selector matches,
    and loses them when their labels change."""
    inside = await api.register(labels={"site": "chengdu"})
    outside = await api.register(labels={"site": "beijing"})
    group = await api.create_group("chengdu", selector="site=chengdu")
    limited = await api.user("limited", [{"role": "operator", "group_id": group["group_id"]}])
    assert (await limited.get(f"/api/v1/devices/{inside['device_id']}")).status == 200
    (await limited.get(f"/api/v1/devices/{outside['device_id']}")).failure(404, "DEVICEOP_ERROR")
    listed = await limited.get("/api/v1/devices")
    assert [d["device_id"] for d in listed.data["items"]] == [inside["device_id"]]
    await relabel(api, inside, {"site": "beijing"})
    (await limited.get(f"/api/v1/devices/{inside['device_id']}")).failure(404, "DEVICEOP_ERROR")
