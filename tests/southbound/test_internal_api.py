"""Kubernetes mode: the controller reaches a session held by a southbound instance
over that instance's internal API, found through device_sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
import websockets

from edgefleet.agent import protocol
from edgefleet.controller.http_link import HttpDeviceLink
from edgefleet.controller.store import Store
from edgefleet.southbound.server import Southbound
from tests.api_client import ApiClient, running_api
from tests.southbound.conftest import FAST, recv_json
from tests.southbound.test_server import answer_orders


@pytest.fixture
async def split(store: Store) -> AsyncIterator[tuple[ApiClient, Southbound]]:
    southbound = Southbound(replace(FAST, internal_port=0, internal_token="inside"), store, 4)
    await southbound.start()
    link = HttpDeviceLink(store, "inside")
    try:
        async with running_api(store, "t", link=link, command_timeout=1.0) as api:
            yield api, southbound
    finally:
        await link.close()
        await southbound.stop()


async def test_status_and_commands_cross_to_the_instance_holding_the_session(
    split: tuple[ApiClient, Southbound],
) -> None:
    api, southbound = split
    device = await api.register()
    ws = await websockets.connect(f"ws://127.0.0.1:{southbound.port}/ws")
    await ws.send(
        protocol.Login(device_id=device["device_id"], password=device["password"]).encode()
    )
    await recv_json(ws)
    await southbound.recorder.drained()
    status = await api.get(f"/api/v1/devices/{device['device_id']}/status")
    assert status.data["state"] == "online"
    upload = {"Memory_info": {"total_memory_mb": 100, "free_memory_mb": 40}, "dev_state": "online"}
    await ws.send(protocol.status_upload(device["device_id"], upload))
    await recv_json(ws)  # the status answer
    history = await api.get(f"/api/v1/devices/{device['device_id']}/status/history")
    assert [item["memory_used_percent"] for item in history.data["items"]] == [60.0]

    answering = asyncio.create_task(
        answer_orders(ws, lambda f: protocol.command_result("success", "done", {"n": 1}))
    )
    answer = await api.post(f"/api/v1/devices/{device['device_id']}/commands", {"order": "x"})
    assert answer.data["status"] == "success" and answer.data["data"] == {"n": 1}
    await ws.close()
    await answering
    await southbound.recorder.drained()
    offline = await api.post(f"/api/v1/devices/{device['device_id']}/commands", {"order": "x"})
    offline.failure(409, "DEVICE_OFFLINE")


async def test_internal_api_requires_the_internal_token(
    split: tuple[ApiClient, Southbound],
) -> None:
    _, southbound = split
    url = f"http://{southbound.internal_address}/internal/v1/devices/1/status"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 401
        async with session.get(url, headers={"Authorization": "Bearer inside"}) as response:
            assert response.status == 409
            assert await response.json() == {"refused": "offline"}


async def test_configuration_and_queued_commands_cross_to_the_instance_too(
    split: tuple[ApiClient, Southbound],
) -> None:
    """A group's configuration change and a queued command for a connected device
    reach it through its instance's internal API, as in Kubernetes mode."""
    api, southbound = split
    device = await api.register()
    group = await api.create_group("kube-cameras")
    await api.put(f"/api/v1/groups/{group['group_id']}/devices/{device['device_id']}")
    ws = await websockets.connect(f"ws://127.0.0.1:{southbound.port}/ws")
    login = protocol.Login(
        device_id=device["device_id"],
        password=device["password"],
        extensions=frozenset({"config", "request_id"}),
    )
    await ws.send(login.encode())
    await recv_json(ws)
    await southbound.recorder.drained()  # the session's address is in the database

    await api.put(f"/api/v1/groups/{group['group_id']}/config", {"config": {"fps": 15}})
    update = await recv_json(ws)
    assert update["type"] == "config_update"
    assert update["data"] == {"version": 1, "config": {"fps": 15}}

    queued = await api.post(
        f"/api/v1/devices/{device['device_id']}/commands",
        {"order": "snapshot", "queue": {"ttl": 60}},
    )
    assert queued.status == 202
    order = await recv_json(ws)
    assert order["Headers"]["order_type"] == "snapshot"
    await ws.close()


async def test_the_internal_push_refuses_what_is_not_a_list_of_ids(
    split: tuple[ApiClient, Southbound],
) -> None:
    _, southbound = split
    url = f"http://{southbound.internal_address}/internal/v1/config/push"
    headers = {"Authorization": "Bearer inside"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(url, json={"device_ids": ["1"]}) as response:
            assert response.status == 400
            assert "device_ids" in (await response.json())["error"]
        async with session.post(url, json={"device_ids": [1]}) as response:
            assert await response.json() == {"queued": 1}
