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
