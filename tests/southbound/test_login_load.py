"""Logins under load: admission by expected wait, no work for devices that left,
the verified-credential cache, and stopping with logins queued.

The devices here get real cost-12 hashes, as users run: one check then holds a
worker for about a quarter of a second, which is what makes a queue. A device whose
check must still be running while the test does several things meanwhile (on a busy
machine a quarter of a second may not be enough) gets a cost-14 hash: a second or
more."""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import websockets
from prometheus_client.parser import text_string_to_metric_families

from edgefleet.agent import protocol
from edgefleet.controller.passwords import hash_password
from edgefleet.controller.store import Store
from tests.conftest import eventually
from tests.server_process import call, edgefleet_serve
from tests.southbound.conftest import FAST, Fleet, ping, recv_json, running_fleet
from tests.southbound.test_server import closed_with

PASSWORD = "a password of cost twelve"
SLOW_ROUNDS = 14
"""bcrypt cost of a check that must outlast what the test does meanwhile."""


async def device_with(store: Store, device_id: int, secret: str) -> dict[str, Any]:
    """A device whose stored hash is ``secret`` (of ``PASSWORD``)."""
    await store.devices.create(
        {
            "device_id": device_id,
            "name": f"cam {device_id}",
            "type": "camera",
            "hardware_sn": f"SN{device_id}",
            "hardware_model": "M",
            "secret": secret,
        }
    )
    return {"device_id": str(device_id), "password": PASSWORD}


async def cost_12_device(store: Store, device_id: int) -> dict[str, Any]:
    """A device whose stored hash costs what users' do (bcrypt cost 12)."""
    return await device_with(store, device_id, await hash_password(PASSWORD, 12))


async def checking(fleet: Fleet, queued: int = 0) -> bool:
    """Whether one password check is running and ``queued`` wait (the count
    ``edgefleet_login_queue`` shows)."""
    checks = fleet.southbound.gate.credentials.checks
    return (checks.running, checks.queued) == (1, queued)


async def checks_by_outcome(fleet: Fleet) -> dict[str, float]:
    async with fleet.api.session.get(fleet.metrics_url) as response:
        text = await response.text()
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "edgefleet_password_checks"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


async def send_login(fleet: Fleet, device: dict[str, Any]) -> websockets.ClientConnection:
    ws = await fleet.connect()
    await ws.send(json.dumps({"device_id": device["device_id"], "password": device["password"]}))
    return ws


async def test_logins_that_cannot_be_checked_in_time_are_told_to_come_back(
    store: Store,
) -> None:
    """One worker, at most a tenth of a second of queue: of ten logins arriving
    together, those that would wait longer hear "server busy" (1013) at once. The
    server expects cost-12 checks; the ten devices share one cost-14 hash, so the
    first check holds the worker until all ten have arrived, however busy the
    machine."""
    settings = replace(FAST, login_concurrency=1, login_max_wait=0.1, login_timeout=5.0)
    async with running_fleet(store, settings, bcrypt_rounds=12) as fleet:
        secret = await hash_password(PASSWORD, SLOW_ROUNDS)
        devices = [await device_with(store, 100 + n, secret) for n in range(10)]
        sockets = await asyncio.gather(*(send_login(fleet, d) for d in devices))
        answers = await asyncio.gather(*(recv_json(ws, timeout=10) for ws in sockets))
        busy = [ws for ws, a in zip(sockets, answers, strict=True) if a.get("message")]
        assert all(a["message"] == protocol.MSG_UNAVAILABLE for a in answers if "message" in a)
        assert 1 <= len(sockets) - len(busy) <= 2  # the one checking, maybe one queued
        assert {(await closed_with(ws))[0] for ws in busy} == {1013}
        outcomes = await checks_by_outcome(fleet)
        assert outcomes["overloaded"] == len(busy)
        for ws in sockets:
            await ws.close()


async def test_a_login_whose_device_left_is_never_checked(store: Store) -> None:
    settings = replace(FAST, login_concurrency=1, login_max_wait=30.0, login_timeout=5.0)
    async with running_fleet(store, settings, bcrypt_rounds=12) as fleet:
        first = await device_with(store, 200, await hash_password(PASSWORD, SLOW_ROUNDS))
        second = await cost_12_device(store, 201)
        blocker = await send_login(fleet, first)  # holds the one worker a second or more
        await eventually(lambda: checking(fleet))
        leaving = await send_login(fleet, second)
        await eventually(lambda: checking(fleet, queued=1))  # queued...
        await leaving.close()  # ... and gone before its turn
        assert (await recv_json(blocker, timeout=10))["status"] == "success"

        async def counted() -> dict[str, float]:
            outcomes = await checks_by_outcome(fleet)
            return outcomes if outcomes.get("abandoned") else {}

        assert await eventually(counted) == {"accepted": 1.0, "abandoned": 1.0}
        await blocker.close()


async def test_a_check_that_ends_after_its_device_left_supersedes_nothing(store: Store) -> None:
    """The device leaves while its password is being checked and comes back at once
    with its session token: the late check must not take the session from it."""
    device = await device_with(store, 300, await hash_password(PASSWORD, SLOW_ROUNDS))
    async with running_fleet(store, FAST, bcrypt_rounds=12) as fleet:
        first = await send_login(fleet, device)
        token = (await recv_json(first, timeout=10))["data"]["token"]
        await first.close()
    # A new process: the same token key, but its own verified-credential pepper, so
    # the next password login costs a real bcrypt check.
    async with running_fleet(store, FAST, bcrypt_rounds=12) as fleet:
        slow = await send_login(fleet, device)
        await eventually(lambda: checking(fleet))  # a second or more
        await slow.close()
        newer = await fleet.connect()
        await newer.send(json.dumps({"device_id": device["device_id"], "token": token}))
        assert (await recv_json(newer))["status"] == "success"

        async def slow_check_done() -> bool:
            return (await checks_by_outcome(fleet)).get("accepted") == 1

        await eventually(slow_check_done)
        await newer.send(ping())
        assert (await recv_json(newer))["data"] == "pong"
        assert int(device["device_id"]) in fleet.southbound.sessions
        await newer.close()


async def test_a_verified_password_skips_bcrypt_until_the_credential_changes(
    store: Store,
) -> None:
    settings = replace(FAST, password_pepper="pepper one", login_timeout=5.0)
    async with running_fleet(store, settings, bcrypt_rounds=12) as fleet:
        device = await cost_12_device(store, 400)
        for _ in range(3):
            ws = await send_login(fleet, device)
            assert (await recv_json(ws, timeout=10))["status"] == "success"
            await ws.close()
            await fleet.settled()  # the digest is written with the session changes
        assert await checks_by_outcome(fleet) == {"accepted": 1.0}  # one bcrypt, three logins

    async with running_fleet(
        store, settings, bcrypt_rounds=12
    ) as restarted:  # another process, same pepper
        ws = await send_login(restarted, device)
        assert (await recv_json(ws, timeout=10))["status"] == "success"
        await ws.close()
        assert await checks_by_outcome(restarted) == {}
        new = "another password of cost four"
        await restarted.api.patch(f"/api/v1/devices/{device['device_id']}", {"password": new})
        ws = await send_login(restarted, device)
        assert (await recv_json(ws, timeout=10))["message"] == protocol.MSG_WRONG_PASSWORD
        ws = await send_login(restarted, {**device, "password": new})
        assert (await recv_json(ws, timeout=10))["status"] == "success"
        assert await checks_by_outcome(restarted) == {"refused": 1.0, "accepted": 1.0}
        await ws.close()

    other = replace(settings, password_pepper="pepper two")
    async with running_fleet(
        store, other, bcrypt_rounds=12
    ) as peppered:  # a digest it cannot make: bcrypt
        ws = await send_login(peppered, {**device, "password": new})
        assert (await recv_json(ws, timeout=10))["status"] == "success"
        assert await checks_by_outcome(peppered) == {"accepted": 1.0}
        await ws.close()


async def test_a_signal_stops_the_server_with_logins_queued(tmp_path: Path) -> None:
    """Two hundred password logins at cost 12 pile up behind four workers; SIGINT
    still ends the process cleanly, well within its grace period."""
    fast = ["--bcrypt-rounds", "12", "--login-max-wait", "60", "--shutdown-grace", "20"]
    with edgefleet_serve(tmp_path, *fast, env={"EDGEFLEET_API_TOKEN": "t"}) as server:
        body = {"name": "cam", "hardware_sn": "SN", "hardware_model": "M"}
        device = await asyncio.to_thread(call, server.base_url, "POST", "/devices", body)
        url = f"ws://127.0.0.1:{server.ws_port}/ws"
        frame = json.dumps({"device_id": device["device_id"], "password": device["password"]})
        sockets = []
        for _ in range(200):
            ws = await websockets.connect(url)
            await ws.send(frame)
            sockets.append(ws)
        await asyncio.sleep(1.0)  # the checks are running and queued
        loop = asyncio.get_running_loop()
        started = loop.time()
        server.process.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(server.process.wait, 30)
        assert code == 0, server.stderr()[-3000:]  # a clean stop, not the watchdog's exit
        assert loop.time() - started < 20  # a bound to catch a hang, not a speed test
        assert "clean shutdown took too long" not in server.stderr()
        for ws in sockets:
            await ws.close()
