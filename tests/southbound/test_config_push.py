"""Desired configuration over real sockets (section 8) with raw extension clients:
sent at login and on change (and not for a write that changes nothing), reports
stored as sent, failures resent at the next login or when asked again, version-1
devices reported unsupported; on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection

from edgefleet.agent import protocol
from tests.conftest import eventually
from tests.controller.test_api_stream import stream
from tests.southbound.conftest import Fleet, nothing_comes


async def config_device(fleet: Fleet, device: dict[str, Any]) -> ClientConnection:
    ws, _ = await fleet.login(
        device,
        device_id=device["device_id"],
        password=device["password"],
        extensions=["config", "request_id"],
    )
    return ws


async def next_update(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    """The next ``config_update`` (the clients send no pings, so nothing else comes)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == protocol.CONFIG_UPDATE:
                return frame


def config_path(device: dict[str, Any]) -> str:
    return f"/api/v1/devices/{device['device_id']}/config"


async def config_of(fleet: Fleet, device: dict[str, Any]) -> dict[str, Any]:
    return (await fleet.api.get(config_path(device))).data


async def test_configuration_set_while_offline_arrives_at_login_and_the_report_is_stored(
    fleet: Fleet,
) -> None:
    device = await fleet.register()
    await fleet.api.put(config_path(device), {"config": {"exposure": 30}})
    ws = await config_device(fleet, device)
    update = await next_update(ws)
    assert update["data"] == {"version": 1, "config": {"exposure": 30}}
    request_id = update["Headers"]["request_id"]
    await ws.send(protocol.config_report(1, {"exposure": 30}, None, request_id))

    async def in_sync() -> bool:
        return (await config_of(fleet, device))["in_sync"] is True

    await eventually(in_sync)
    answer = await config_of(fleet, device)
    assert answer["reported"] == {"exposure": 30} and answer["reported_version"] == 1
    assert answer["report_status"] == "success" and answer["reason"] is None

    await fleet.api.patch(config_path(device), {"config": {"exposure": 31}})
    change = await next_update(ws)
    assert change["data"] == {"version": 2, "config": {"exposure": 31}}
    assert (await config_of(fleet, device))["in_sync"] is False
    events = [e["event"] for e in await fleet.events(device)]
    assert events.count("config_changed") == 2 and "config_reported" in events
    await ws.close()


async def test_a_group_change_reaches_every_connected_member(fleet: Fleet) -> None:
    group = await fleet.api.create_group("cameras")
    members = [await fleet.register(name=f"m{i}") for i in range(5)]
    outsider = await fleet.register(name="outsider")
    for device in members:
        await fleet.api.put(f"/api/v1/groups/{group['group_id']}/devices/{device['device_id']}")
    sockets = [await config_device(fleet, device) for device in [*members, outsider]]
    await fleet.api.put(config_path(members[0]), {"config": {"mine": True}})
    assert (await next_update(sockets[0]))["data"]["config"] == {"mine": True}

    await fleet.api.put(
        f"/api/v1/groups/{group['group_id']}/config", {"config": {"mine": False, "fps": 15}}
    )
    updates = await asyncio.gather(*(next_update(ws) for ws in sockets[:5]))
    assert updates[0]["data"] == {"version": 2, "config": {"mine": True, "fps": 15}}
    for update in updates[1:]:
        assert update["data"] == {"version": 1, "config": {"mine": False, "fps": 15}}
    assert await nothing_comes(sockets[5])
    for ws in sockets:
        await ws.close()


async def test_a_write_that_changes_nothing_sends_the_device_nothing(fleet: Fleet) -> None:
    """The device hears of the next real change, numbered next after the one it
    runs: the identical writes between sent it nothing and took no version."""
    group = await fleet.api.create_group("cameras")
    device = await fleet.register()
    await fleet.api.put(f"/api/v1/groups/{group['group_id']}/devices/{device['device_id']}")
    group_path = f"/api/v1/groups/{group['group_id']}/config"
    await fleet.api.put(group_path, {"config": {"fps": 15}})
    await fleet.api.put(config_path(device), {"config": {"exposure": 30}})
    ws = await config_device(fleet, device)
    update = await next_update(ws)
    assert update["data"] == {"version": 2, "config": {"fps": 15, "exposure": 30}}
    await ws.send(
        protocol.config_report(
            2, {"fps": 15, "exposure": 30}, None, update["Headers"]["request_id"]
        )
    )

    async def in_sync() -> bool:
        return (await config_of(fleet, device))["in_sync"] is True

    await eventually(in_sync)
    again = await fleet.api.put(config_path(device), {"config": {"exposure": 30}})
    assert again.status == 200 and again.data["desired_version"] == 1
    assert (await fleet.api.put(group_path, {"config": {"fps": 15}})).data["version"] == 1
    assert (await config_of(fleet, device))["in_sync"] is True

    await fleet.api.patch(config_path(device), {"config": {"exposure": 31}})
    change = await next_update(ws)
    assert change["data"] == {"version": 3, "config": {"fps": 15, "exposure": 31}}
    await ws.close()


async def test_a_failed_apply_keeps_the_desired_version_and_is_resent_at_the_next_login(
    fleet: Fleet,
) -> None:
    device = await fleet.register()
    await fleet.api.put(config_path(device), {"config": {"exposure": 999}})
    ws = await config_device(fleet, device)
    update = await next_update(ws)
    filters = {"device_id": device["device_id"], "types": "config.reported"}
    async with stream(fleet.api, filters) as events:
        await ws.send(
            protocol.config_report(
                None, {"exposure": 30}, "exposure out of range", update["Headers"]["request_id"]
            )
        )
        seen = await events.next()
    assert seen["event"] == "config.reported"
    assert seen["data"]["data"] == {
        "version": None,
        "status": "fail",
        "message": "exposure out of range",
    }

    async def failed() -> dict[str, Any] | None:
        answer = await config_of(fleet, device)
        return answer if answer["report_status"] == "fail" else None

    answer = await eventually(failed)
    assert answer["in_sync"] is False and "exposure out of range" in answer["reason"]
    assert answer["desired"] == {"exposure": 999} and answer["desired_version"] == 1
    assert answer["reported"] == {"exposure": 30}
    # Asking again is how a user retries: the same document, the same version,
    # sent again because the device is not in sync with it.
    retried = await fleet.api.put(config_path(device), {"config": {"exposure": 999}})
    assert retried.data["desired_version"] == 1
    assert (await next_update(ws))["data"] == {"version": 1, "config": {"exposure": 999}}
    await ws.close()

    again = await config_device(fleet, device)
    resent = await next_update(again)
    assert resent["data"] == {"version": 1, "config": {"exposure": 999}}
    await again.close()


async def test_a_version_1_device_is_reported_unsupported(fleet: Fleet) -> None:
    device = await fleet.register()
    await fleet.api.put(config_path(device), {"config": {"exposure": 30}})
    ws, _ = await fleet.login(device)

    async def unsupported() -> dict[str, Any] | None:
        answer = await config_of(fleet, device)
        return answer if answer["reason"] and "version-1" in answer["reason"] else None

    answer = await eventually(unsupported)
    assert answer["in_sync"] is None
    await ws.send(protocol.config_report(1, {"exposure": 30}))  # not listed: ignored
    await fleet.api.patch(config_path(device), {"config": {"exposure": 31}})
    assert await nothing_comes(ws)
    assert (await config_of(fleet, device))["reported"] is None
    await ws.close()


async def effective_of(fleet: Fleet, device: dict[str, Any]) -> dict[str, Any]:
    answer = await fleet.api.get(config_path(device), params={"effective": "true"})
    return answer.data


async def test_joining_and_leaving_a_group_by_hand_sends_the_new_configuration(
    fleet: Fleet,
) -> None:
    group = await fleet.api.create_group("cameras")
    members = f"/api/v1/groups/{group['group_id']}/devices"
    await fleet.api.put(f"/api/v1/groups/{group['group_id']}/config", {"config": {"fps": 15}})
    device, outsider = await fleet.register(name="joining"), await fleet.register(name="outsider")
    await fleet.api.put(config_path(device), {"config": {"exposure": 30}})
    ws, other = await config_device(fleet, device), await config_device(fleet, outsider)
    assert (await next_update(ws))["data"] == {"version": 1, "config": {"exposure": 30}}

    added = await fleet.api.put(f"{members}/{device['device_id']}")
    assert added.status in (200, 201, 204), added.body
    joined = await next_update(ws)
    assert joined["data"] == {"version": 2, "config": {"exposure": 30, "fps": 15}}
    effective = await effective_of(fleet, device)
    assert effective["desired_version"] == 2 and effective["groups"] == ["cameras"]

    removed = await fleet.api.delete(f"{members}/{device['device_id']}")
    assert removed.status == 200 and removed.data == {"member": False}, removed.body
    left = await next_update(ws)
    assert left["data"] == {"version": 3, "config": {"exposure": 30}}
    assert (await effective_of(fleet, device))["desired_version"] == 3

    # Through the device's own list of groups, and with the group deleted: the same.
    await fleet.api.put(
        f"/api/v1/devices/{device['device_id']}/groups", {"group_ids": [group["group_id"]]}
    )
    assert (await next_update(ws))["data"]["config"] == {"exposure": 30, "fps": 15}
    await fleet.api.delete(f"/api/v1/groups/{group['group_id']}")
    assert (await next_update(ws))["data"]["config"] == {"exposure": 30}

    assert await nothing_comes(other)  # never in the group: never sent anything
    changes = [e for e in await fleet.events(device) if e["event"] == "config_changed"]
    assert [e["detail"].get("membership") for e in changes] == [
        None, "joined", "left", "joined", "left",
    ]  # fmt: skip
    await ws.close()
    await other.close()


async def test_labels_and_selectors_moving_a_device_in_and_out_send_the_new_configuration(
    fleet: Fleet,
) -> None:
    group = await fleet.api.create_group("edge", selector="tier=edge")
    await fleet.api.put(
        f"/api/v1/groups/{group['group_id']}/config", {"config": {"fps": 15, "upload": True}}
    )
    device = await fleet.register(labels={"tier": "core"})
    ws = await config_device(fleet, device)
    assert await nothing_comes(ws)  # no document reaches it yet: nothing to send

    relabelled = await fleet.api.patch(
        f"/api/v1/devices/{device['device_id']}", {"labels": {"tier": "edge"}}
    )
    assert relabelled.status == 200, relabelled.body
    assert (await next_update(ws))["data"] == {
        "version": 1, "config": {"fps": 15, "upload": True},
    }  # fmt: skip

    # The group's selector is edited so that it no longer matches: the keys go.
    edited = await fleet.api.patch(
        f"/api/v1/groups/{group['group_id']}", {"selector": "tier=edge,site=chengdu"}
    )
    assert edited.status == 200, edited.body
    assert (await next_update(ws))["data"] == {"version": 2, "config": {}}

    # A label change brings it back; another one takes it out again.
    await fleet.api.patch(
        f"/api/v1/devices/{device['device_id']}",
        {"labels": {"tier": "edge", "site": "chengdu"}},
    )
    assert (await next_update(ws))["data"]["config"] == {"fps": 15, "upload": True}
    await fleet.api.patch(f"/api/v1/devices/{device['device_id']}", {"labels": {"tier": "retired"}})
    left = await next_update(ws)
    assert left["data"] == {"version": 4, "config": {}}
    assert (await effective_of(fleet, device))["desired_version"] == 4
    await ws.close()
