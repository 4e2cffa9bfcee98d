"""Labels on devices and label selectors on the device list, over real HTTP, on
SQLite and MariaDB."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api_client import ApiClient

DEVICES = "/api/v1/devices"


async def ids(api: ApiClient, **params: Any) -> list[str]:
    answer = await api.get(DEVICES, params={"per_page": 500, **params})
    assert answer.status == 200, answer.body
    return [d["device_id"] for d in answer.data["items"]]


async def test_labels_are_set_at_registration_replaced_by_patch_and_shown(
    api: ApiClient,
) -> None:
    device = await api.register(labels={"site": "chengdu", "example.com/tier": "edge"})
    assert device["labels"] == {"site": "chengdu", "example.com/tier": "edge"}
    path = f"{DEVICES}/{device['device_id']}"
    changed = await api.patch(path, {"labels": {"site": "beijing", "retired": ""}})
    assert changed.data["labels"] == {"site": "beijing", "retired": ""}
    assert (await api.get(path)).data["labels"] == {"site": "beijing", "retired": ""}
    # A patch without labels leaves them alone.
    assert (await api.patch(path, {"description": "x"})).data["labels"]["site"] == "beijing"
    assert await ids(api, selector="site=beijing,retired") == [device["device_id"]]
    assert await ids(api, selector="example.com/tier") == []
    events = (await api.get(f"{path}/events")).data["items"]
    assert events[1]["detail"] == {"fields": ["labels"]}


@pytest.mark.parametrize(
    ("labels", "named"),
    [
        ({"Bad Key": "x"}, "label key 'Bad Key'"),
        ({"site": "a" * 64}, "label 'site': value"),
        ({"UPPER/site": "x"}, "label key 'UPPER/site': the prefix must be a DNS subdomain"),
        ({"site": "-x-"}, "label 'site': value '-x-'"),
    ],
)
async def test_a_bad_label_is_refused_naming_it(
    api: ApiClient, labels: dict[str, str], named: str
) -> None:
    body = {"name": "x", "hardware_sn": "S", "hardware_model": "M", "labels": labels}
    message = (await api.post(DEVICES, body)).failure(400, "GENERAL_ERROR")
    assert message.startswith("body field 'labels'") and named in message, message
    device = await api.register()
    patched = await api.patch(f"{DEVICES}/{device['device_id']}", {"labels": labels})
    assert named in patched.failure(400, "GENERAL_ERROR")
    assert (await api.get(f"{DEVICES}/{device['device_id']}")).data["labels"] == {}


async def test_selectors_combine_with_the_other_filters_and_paging(api: ApiClient) -> None:
    group = await api.create_group("gates")
    made = {}
    for name, labels, kind in [
        ("a", {"site": "chengdu", "tier": "edge"}, "camera"),
        ("b", {"site": "chengdu", "tier": "core"}, "camera"),
        ("c", {"site": "chengdu", "tier": "edge", "retired": "yes"}, "camera"),
        ("d", {"site": "beijing", "tier": "edge"}, "gateway"),
        ("e", {}, "camera"),
    ]:
        made[name] = (await api.register(name=f"dev-{name}", labels=labels, type=kind))["device_id"]
    for name in "abd":
        await api.put(f"/api/v1/groups/{group['group_id']}/devices/{made[name]}")

    def named(*names: str) -> list[str]:
        return sorted(made[n] for n in names)

    selector = "site=chengdu,tier in (edge,core),!retired"
    assert await ids(api, selector=selector) == named("a", "b")
    assert await ids(api, selector="tier notin (core)") == named("a", "c", "d", "e")
    assert await ids(api, selector="site!=chengdu") == named("d", "e")
    assert await ids(api, selector="tier=edge", type="gateway") == named("d")
    assert await ids(api, selector="tier=edge", group=group["group_id"]) == named("a", "d")
    assert await ids(api, selector="tier", q="dev-c") == named("c")
    first = await api.get(DEVICES, params={"selector": "tier", "per_page": 2})
    second = await api.get(DEVICES, params={"selector": "tier", "per_page": 2, "page": 2})
    assert first.data["total"] == second.data["total"] == 4
    listed = [d["device_id"] for d in first.data["items"] + second.data["items"]]
    assert listed == named("a", "b", "c", "d")


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ("site=chengdu,", "expected a requirement after ','"),
        ("tier in edge", "expected '(' after 'in'"),
        ("tier in (edge", "expected ')' to close the set of values"),
        ("count>3", "operator '>' is not supported"),
        ("Bad Key", "expected an operator"),
        ("-site", "invalid label key '-site'"),
    ],
)
async def test_an_invalid_selector_is_refused_naming_the_problem(
    api: ApiClient, selector: str, problem: str
) -> None:
    await api.register(labels={"site": "chengdu"})
    answer = await api.get(DEVICES, params={"selector": selector})
    message = answer.failure(400, "GENERAL_ERROR")
    assert message.startswith("query field 'selector': invalid selector: at ")
    assert problem in message, message


async def limited_to_one_of_two(api: ApiClient, role: str) -> tuple[ApiClient, str]:
    """Two devices labelled alike, one in a group; a caller with ``role`` on that
    group only, and the id of the device it may see."""
    group = await api.create_group("mine")
    mine = await api.register(labels={"site": "chengdu"})
    await api.register(labels={"site": "chengdu"})
    await api.put(f"/api/v1/groups/{group['group_id']}/devices/{mine['device_id']}")
    limited = await api.user("limited", [{"role": role, "group_id": group["group_id"]}])
    return limited, mine["device_id"]


async def test_a_group_limited_caller_selects_only_among_its_devices(api: ApiClient) -> None:
    limited, mine = await limited_to_one_of_two(api, "viewer")
    assert await ids(limited, selector="site=chengdu") == [mine]
