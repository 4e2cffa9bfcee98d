"""Commands that wait for their device, over real sockets with raw clients, on SQLite
and MariaDB: delivered once and in order after the next login, expired after their
time to live, canceled, and never sent twice across a southbound restart."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import ClientConnection

from edgefleet.agent import protocol
from edgefleet.controller.store import Store
from tests.api_client import Answer, ApiClient
from tests.conftest import eventually
from tests.southbound.conftest import (
    FAST,
    STAYS_UNKNOWN,
    Fleet,
    nothing_comes,
    ping,
    recv_json,
    running_fleet,
)
from tests.southbound.test_server import counted, scrape_families


def commands_path(device: dict[str, Any]) -> str:
    return f"/api/v1/devices/{device['device_id']}/commands"


async def queue(fleet: Fleet, device: dict[str, Any], order: str, ttl: float = 3600) -> str:
    """Queue a command that, once sent, has 30 s for its answer: the test takes its
    time between the order and the answer, however busy the machine."""
    body = {"order": order, "params": {"n": 1}, "timeout": 30, "queue": {"ttl": ttl}}
    answer = await fleet.api.post(commands_path(device), body)
    assert answer.status == 202, answer.body
    assert answer.data["status"] == "queued"
    return answer.data["command_id"]


async def command(fleet: Fleet, command_id: str) -> dict[str, Any]:
    return (await fleet.api.get(f"/api/v1/commands/{command_id}")).data


async def in_state(fleet: Fleet, command_id: str, state: str) -> dict[str, Any] | None:
    row = await command(fleet, command_id)
    return row if row["state"] == state else None


async def next_order(ws: ClientConnection) -> dict[str, Any]:
    order = await recv_json(ws, timeout=5)
    assert order["type"] == protocol.ORDER, order
    return order


async def answer(ws: ClientConnection, order: dict[str, Any], value: Any) -> None:
    request_id = order["Headers"]["request_id"]
    await ws.send(protocol.command_result("success", "done", value, request_id))


async def test_queued_commands_are_delivered_once_in_order_after_the_next_login(
    fleet: Fleet,
) -> None:
    device = await fleet.register()
    first = await queue(fleet, device, "first")
    second = await queue(fleet, device, "second")
    assert (await command(fleet, first))["state"] == "queued"

    ws, _ = await fleet.login(device)  # a version-1 device: one command at a time
    order = await next_order(ws)
    assert order["Headers"]["order_type"] == "first"
    assert order["data"]["params"] == {"n": 1}
    assert (await command(fleet, second))["state"] == "queued"  # in order: one at a time
    await answer(ws, order, {"took": 1})
    order = await next_order(ws)
    assert order["Headers"]["order_type"] == "second"
    await answer(ws, order, {"took": 2})
    done = await eventually(lambda: in_state(fleet, second, "succeeded"))
    assert done["result"] == {"status": "success", "message": "done", "data": {"took": 2}}
    assert done["queued"] is True and done["sent_at"] is not None
    assert await nothing_comes(ws)
    await ws.close()

    again, _ = await fleet.login(device)
    assert await nothing_comes(again)  # delivered once: a new login brings nothing
    live = await fleet.api.post(commands_path(device), {"order": "restart", "timeout": 0.3})
    live.failure(504, "COMMAND_TIMEOUT")
    history = (await fleet.api.get(commands_path(device))).data["items"]
    assert [c["order"] for c in history] == ["restart", "second", "first"]
    assert [c["state"] for c in history] == ["timed_out", "succeeded", "succeeded"]
    await again.close()


async def test_a_queued_command_to_an_online_device_goes_at_once(fleet: Fleet) -> None:
    device = await fleet.register()
    ws, _ = await fleet.login(device)
    command_id = await queue(fleet, device, "snapshot")
    order = await next_order(ws)
    await answer(ws, order, None)
    assert (await eventually(lambda: in_state(fleet, command_id, "succeeded")))["result"]
    await ws.close()


async def test_a_queued_command_expires_after_its_time_to_live(fleet: Fleet) -> None:
    device = await fleet.register()
    command_id = await queue(fleet, device, "late", ttl=0.2)
    expired = await eventually(lambda: in_state(fleet, command_id, "expired"))
    assert expired["result"] is None and expired["finished_at"] is not None
    ws, _ = await fleet.login(device)
    assert await nothing_comes(ws)
    await ws.close()


async def test_a_canceled_command_is_never_sent(fleet: Fleet) -> None:
    device = await fleet.register()
    command_id = await queue(fleet, device, "never")
    canceled = await fleet.api.delete(f"/api/v1/commands/{command_id}")
    assert canceled.data["state"] == "canceled"
    again = await fleet.api.delete(f"/api/v1/commands/{command_id}")
    assert "canceled, not queued" in again.failure(409, "COMMAND_ERROR")
    ws, _ = await fleet.login(device)
    assert await nothing_comes(ws)
    (await fleet.api.get("/api/v1/commands/42")).failure(404, "COMMAND_ERROR")
    bad = await fleet.api.post(commands_path(device), {"order": "x", "queue": {"ttl": 0}})
    assert "'queue.ttl'" in bad.failure(400, "GENERAL_ERROR")
    await ws.close()


async def test_a_southbound_restart_in_the_middle_of_a_delivery_never_sends_it_twice(
    store: Store,
) -> None:
    async with running_fleet(store, FAST) as fleet:
        device = await fleet.register()
        command_id = await queue(fleet, device, "calibrate")
        ws, _ = await fleet.login(device)
        order = await next_order(ws)  # the device has it, and does not answer yet
        assert (await command(fleet, command_id))["state"] == "sent"
    # The southbound that was delivering it is gone; a new one serves the device.
    async with running_fleet(store, FAST) as restarted:
        again, _ = await restarted.login(device)
        assert await nothing_comes(again)
        await again.send(
            protocol.command_result("success", "done", None, order["Headers"]["request_id"])
        )
        ended = await command(restarted, command_id)
        assert ended["state"] == "timed_out"
        assert "restarted; not sent again" in ended["result"]["message"]
        assert await nothing_comes(again)
        await again.close()


async def test_a_claim_whose_commit_the_delivery_never_saw_is_still_delivered_once(
    fleet: Fleet,
) -> None:
    """A claim can commit while the southbound's database deadline fires: the
    command is ``sent`` in the database, yet nothing went to the device. The
    instance knows it never sent it, so the device's next login brings it."""
    device = await fleet.register()
    first = await queue(fleet, device, "first")
    second = await queue(fleet, device, "second")
    instance = fleet.southbound.instance
    claimed = await fleet.store.commands.claim(int(device["device_id"]), instance)
    assert claimed is not None and claimed["state"] == "sent"

    ws, _ = await fleet.login(device)
    for expected in ("first", "second"):  # in order, the lost claim at its place
        order = await next_order(ws)
        assert order["Headers"]["order_type"] == expected
        await answer(ws, order, None)
    assert (await eventually(lambda: in_state(fleet, second, "succeeded")))["result"]
    assert (await command(fleet, first))["state"] == "succeeded"
    assert await nothing_comes(ws)
    await ws.close()


async def test_a_command_another_instance_claimed_is_left_to_it(fleet: Fleet) -> None:
    """Only the instance that claimed a command can know it never sent it."""
    device = await fleet.register()
    command_id = await queue(fleet, device, "elsewhere")
    await fleet.store.commands.claim(int(device["device_id"]), "another-instance")
    ws, _ = await fleet.login(device)
    assert await nothing_comes(ws)
    assert (await command(fleet, command_id))["state"] == "sent"
    await ws.close()


async def test_a_queued_command_waits_while_a_version_1_device_is_busy(fleet: Fleet) -> None:
    """A version-1 device takes one command at a time: the queued one is refused as
    busy before anything is sent, stays queued, and goes once the device is free."""
    device = await fleet.register()
    ws, _ = await fleet.login(device)
    live = asyncio.create_task(
        fleet.api.post(commands_path(device), {"order": "slow", "timeout": 5})
    )
    slow = await next_order(ws)
    command_id = await queue(fleet, device, "after")
    assert await nothing_comes(ws)  # busy: not sent
    # Claimed for delivery, refused as busy, back in the queue:
    await eventually(lambda: in_state(fleet, command_id, "queued"))
    await answer(ws, slow, None)
    assert (await live).data["status"] == "success"
    after = await next_order(ws)
    assert after["Headers"]["order_type"] == "after"
    await answer(ws, after, None)
    await eventually(lambda: in_state(fleet, command_id, "succeeded"))
    await ws.close()


async def test_a_queued_command_refused_while_its_device_was_unknown_goes_when_it_is_back(
    store: Store,
) -> None:
    """A silent device turns unknown; its session stays open, so it will not log in
    again. A command queued meanwhile is refused before it is sent, goes back to
    the queue, and is delivered as soon as the device is heard from."""
    async with running_fleet(store, STAYS_UNKNOWN) as fleet:
        device = await fleet.register()
        ws, _ = await fleet.login(device)

        async def refused_as_unknown() -> bool:
            commands = counted(await scrape_families(fleet), "edgefleet_commands")
            return commands.get(("custom", "unknown")) == 1.0

        await eventually(lambda: fleet.is_(device, "unknown"))
        command_id = await queue(fleet, device, "later")
        await eventually(refused_as_unknown)
        await eventually(lambda: in_state(fleet, command_id, "queued"))
        await ws.send(ping())
        assert (await recv_json(ws))["data"] == "pong"
        order = await next_order(ws)
        assert order["Headers"]["order_type"] == "later"
        await answer(ws, order, None)
        await eventually(lambda: in_state(fleet, command_id, "succeeded"))
        await ws.close()


async def queue_for_group(
    api: ApiClient, group: dict[str, Any], order: str, ttl: float = 3600
) -> Answer:
    return await api.post(
        f"/api/v1/groups/{group['group_id']}/commands",
        {"order": order, "params": {"n": 2}, "queue": {"ttl": ttl}},
    )


async def test_a_command_queued_for_a_group_reaches_each_member_once_when_it_is_back(
    fleet: Fleet,
) -> None:
    """Every member — matched by the selector or put there by hand — gets its own
    queued command, delivered after its next login and never again."""
    group = await fleet.api.create_group("site-a", selector="site=a")
    matched = await fleet.register(labels={"site": "a"})
    by_hand = await fleet.register()
    outsider = await fleet.register(labels={"site": "b"})
    await fleet.api.put(f"/api/v1/groups/{group['group_id']}/devices/{by_hand['device_id']}")

    queued = await queue_for_group(fleet.api, group, "calibrate")
    assert queued.status == 202, queued.body
    results = {r["device_id"]: r for r in queued.data["results"]}
    assert set(results) == {matched["device_id"], by_hand["device_id"]}
    assert all(r["status"] == "queued" for r in results.values())
    assert len({r["command_id"] for r in results.values()}) == 2
    for device_id, result in results.items():
        row = await command(fleet, result["command_id"])
        assert row["state"] == "queued" and row["device_id"] == device_id and row["queued"]

    for device in (matched, by_hand):
        ws, _ = await fleet.login(device)
        order = await next_order(ws)
        assert order["Headers"]["order_type"] == "calibrate"
        assert order["data"]["params"] == {"n": 2}
        await answer(ws, order, {"device": device["device_id"]})
        command_id = results[device["device_id"]]["command_id"]
        done = await eventually(lambda c=command_id: in_state(fleet, c, "succeeded"))
        assert done["result"]["data"] == {"device": device["device_id"]}
        await ws.close()
        again, _ = await fleet.login(device)
        assert await nothing_comes(again)  # delivered once
        await again.close()
    ws, _ = await fleet.login(outsider)
    assert await nothing_comes(ws)
    assert (await fleet.api.get(commands_path(outsider))).data["items"] == []
    await ws.close()


async def test_a_user_limited_to_some_groups_queues_only_for_their_devices(
    fleet: Fleet,
) -> None:
    mine = await fleet.api.create_group("mine")
    theirs = await fleet.api.create_group("theirs")
    own, foreign = await fleet.register(), await fleet.register()
    await fleet.api.put(f"/api/v1/groups/{mine['group_id']}/devices/{own['device_id']}")
    await fleet.api.put(f"/api/v1/groups/{theirs['group_id']}/devices/{foreign['device_id']}")
    limited = await fleet.api.user("limited", [{"role": "operator", "group_id": mine["group_id"]}])

    refused = await queue_for_group(limited, theirs, "reboot")
    refused.failure(404, "GROUPOP_ERROR")
    allowed = await queue_for_group(limited, mine, "reboot")
    assert allowed.status == 202, allowed.body
    assert [r["device_id"] for r in allowed.data["results"]] == [own["device_id"]]
    assert (await fleet.api.get(commands_path(foreign))).data["items"] == []
    history = (await fleet.api.get(commands_path(own))).data["items"]
    assert [(c["order"], c["state"], c["actor"]) for c in history] == [
        ("reboot", "queued", "limited")
    ]
    audit = (await fleet.api.get("/api/v1/audit?action=queue_group_command")).data["items"]
    assert [a["result"] for a in audit] == ["success", "failure"]
