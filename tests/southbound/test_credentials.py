"""Login lookups: concurrent logins share queries; a database outage is no crash."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import websockets

from edgefleet.agent import protocol
from edgefleet.controller.passwords import hash_password
from edgefleet.controller.store import Store
from edgefleet.southbound.credentials import BatchLoader
from tests.conftest import eventually
from tests.southbound.conftest import FAST, recv_json, running_fleet
from tests.tcp_proxy import TcpProxy


async def test_concurrent_lookups_are_coalesced_into_few_queries() -> None:
    queries: list[list[int]] = []

    async def fetch(ids: list[int]) -> dict[int, dict]:
        queries.append(sorted(ids))
        await asyncio.sleep(0.01)
        return {i: {"id": i} for i in ids if i % 2}

    loader = BatchLoader(fetch)
    results = await asyncio.gather(*(loader.load(i) for i in range(1, 101)), loader.load(3))
    assert results[:4] == [{"id": 1}, None, {"id": 3}, None]
    assert results[-1] == {"id": 3}
    assert len(queries) == 1 and queries[0] == list(range(1, 101))
    later = await asyncio.gather(loader.load(5), loader.load(7))
    assert later == [{"id": 5}, {"id": 7}] and len(queries) == 2


async def test_failed_query_fails_only_its_batch() -> None:
    calls = 0

    async def fetch(ids: list[int]) -> dict[int, dict]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database gone")
        return {i: {"id": i} for i in ids}

    loader = BatchLoader(fetch)
    first = await asyncio.gather(loader.load(1), return_exceptions=True)
    assert isinstance(first[0], ConnectionError)
    assert await loader.load(1) == {"id": 1}


async def test_login_while_the_database_is_away_is_told_to_retry(
    store_behind_proxy: tuple[Store, TcpProxy],
) -> None:
    store, proxy = store_behind_proxy
    async with running_fleet(store, replace(FAST, login_timeout=5.0)) as fleet:
        device = await fleet.register()
        await proxy.stop()
        ws = await websockets.connect(fleet.ws_url)
        await ws.send(
            json.dumps({"device_id": device["device_id"], "password": device["password"]})
        )
        assert await recv_json(ws, timeout=5) == {
            "status": "fail",
            "message": protocol.MSG_UNAVAILABLE,
        }
        await proxy.start()

        async def logs_in() -> bool:  # as a device does: retry until let in
            ws = await fleet.connect()
            frame = {"device_id": device["device_id"], "password": device["password"]}
            await ws.send(json.dumps(frame))
            answer = await recv_json(ws, timeout=5)
            await ws.close()
            return answer["status"] == "success"

        assert await eventually(logs_in)


async def test_login_concurrency_bounds_the_password_checks_running_at_once(
    store: Store,
) -> None:
    """Eight devices log in at once; with ``--login-concurrency 2`` two bcrypt checks
    run side by side and never more (counted by the checker, not timed)."""
    async with running_fleet(store, replace(FAST, login_concurrency=2)) as fleet:
        devices = [await fleet.register() for _ in range(8)]
        # A slower hash than the tests' cost 4, so that the checks overlap.
        slow = await hash_password(devices[0]["password"], 10)
        for device in devices:
            await store.devices.update(int(device["device_id"]), {"secret": slow})

        async def log_in(device: dict) -> None:
            async with websockets.connect(fleet.ws_url) as ws:
                frame = {"device_id": device["device_id"], "password": devices[0]["password"]}
                await ws.send(json.dumps(frame))
                assert (await recv_json(ws, timeout=30))["status"] == "success"

        await asyncio.gather(*(log_in(device) for device in devices))
        checks = fleet.southbound.gate.credentials.checks
        assert checks.most_running == 2
        assert checks.running == 0
