"""A group command reaches the members a selector chose, over real sockets: the
northbound, the southbound and devices logged in on WebSockets."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import ClientConnection

from edgefleet.agent import protocol
from tests.southbound.conftest import Fleet, recv_json


async def answer_one_order(ws: ClientConnection) -> None:
    order = await recv_json(ws, timeout=5)
    request_id = order["Headers"]["request_id"]
    await ws.send(protocol.command_result("success", "done", request_id=request_id))


async def test_a_group_command_reaches_the_devices_the_selector_matches(fleet: Fleet) -> None:
    edge = [await fleet.register(labels={"tier": "edge"}) for _ in range(2)]
    core = await fleet.register(labels={"tier": "core"})
    group = await fleet.api.create_group("edge", selector="tier=edge")
    sockets: dict[str, Any] = {}
    for device in [*edge, core]:
        sockets[device["device_id"]] = (await fleet.login(device))[0]

    answering = [asyncio.create_task(answer_one_order(sockets[d["device_id"]])) for d in edge]
    answer = await fleet.api.post(
        f"/api/v1/groups/{group['group_id']}/commands", {"order": "snapshot", "timeout": 5}
    )
    await asyncio.gather(*answering)
    results = {r["device_id"]: r["status"] for r in answer.data["results"]}
    assert results == {d["device_id"]: "success" for d in edge}

    # The core device is relabelled into the group: the next command reaches it too.
    moved = await fleet.api.patch(
        f"/api/v1/devices/{core['device_id']}", {"labels": {"tier": "edge"}}
    )
    assert moved.status == 200, moved.body
    everyone = [*edge, core]
    answering = [asyncio.create_task(answer_one_order(sockets[d["device_id"]])) for d in everyone]
    answer = await fleet.api.post(
        f"/api/v1/groups/{group['group_id']}/commands", {"order": "snapshot", "timeout": 5}
    )
    await asyncio.gather(*answering)
    assert {r["device_id"] for r in answer.data["results"]} == {d["device_id"] for d in everyone}
    assert all(r["status"] == "success" for r in answer.data["results"])
    for ws in sockets.values():
        await ws.close()
