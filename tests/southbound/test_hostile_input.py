"""What an attacker or a broken device sends: each finding of the hardening pass,
over real sockets, and the class of bug behind it."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import Any

import pytest
import websockets
from websockets.asyncio.server import ServerConnection, serve

from edgefleet.agent import protocol
from edgefleet.controller.passwords import hash_password
from edgefleet.controller.store import Store
from edgefleet.southbound.connection import DeviceConnection
from edgefleet.southbound.events import Left, SessionEvents, StatusReceived
from edgefleet.southbound.live import LiveStatusBook
from edgefleet.southbound.login import LoginGate
from edgefleet.southbound.recorder import Recorder
from edgefleet.southbound.session import Timings
from edgefleet.southbound.sessions import SessionTable
from tests.southbound.conftest import FAST, Fleet, ping, recv_json, running_fleet
from tests.southbound.test_server import STATUS, closed_with
from tests.tcp_proxy import TcpProxy


def strict(text: str) -> Any:
    """Parse as a strict JSON parser would: NaN and Infinity are errors."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


async def raw_status(fleet: Fleet, device: dict[str, Any]) -> tuple[int, str]:
    url = f"{fleet.api.base_url}/api/v1/devices/{device['device_id']}/status"
    async with fleet.api.session.get(url, headers={"Authorization": "Bearer t"}) as response:
        return response.status, await response.text()


async def still_answers(ws: websockets.ClientConnection) -> None:
    await ws.send(ping())
    assert (await recv_json(ws))["data"] == "pong"


# --- 1. no frame leaves a session attached without its connection -----------------------


async def test_deep_nesting_is_a_bad_frame_before_and_after_login(fleet: Fleet) -> None:
    device = await fleet.register()
    ws, _ = await fleet.login(device)
    await ws.send("[" * 60000)
    await ws.send('{"type": "ping_pong", "data": ' + "[" * 5000 + "]" * 5000 + "}")
    await still_answers(ws)
    await fleet.settled()
    assert await fleet.state(device) == "online"

    stranger = await fleet.connect()
    await stranger.send("[" * 60000)
    assert await recv_json(stranger) == {"status": "fail", "message": protocol.MSG_NOT_JSON}
    assert (await closed_with(stranger))[0] == 1008
    await ws.close()


@pytest.mark.parametrize(
    "value", ["1" + "0" * 400, "NaN", "Infinity", "-Infinity", "1e999"], ids=str.__len__
)
async def test_a_hostile_number_in_a_status_upload_is_refused_and_the_device_lives(
    fleet: Fleet, value: str
) -> None:
    device = await fleet.register()
    ws, _ = await fleet.login(device)
    await ws.send(protocol.status_upload(device["device_id"], STATUS))
    await recv_json(ws)
    upload = protocol.status_upload(device["device_id"], STATUS)
    hostile = upload.replace('"root_used_percent":25.0', f'"root_used_percent":{value}')
    assert hostile != upload
    await ws.send(hostile)
    await still_answers(ws)  # the hostile upload was not answered: it was ignored
    status, text = await raw_status(fleet, device)
    assert status == 200
    assert strict(text)["data"]["disk_used_percent"] == 25.0
    await fleet.settled()
    assert await fleet.state(device) == "online"
    await ws.close()


async def test_out_of_range_numbers_never_reach_the_answer(fleet: Fleet) -> None:
    """Valid JSON, impossible values: negative memory, a disk 300 % full, times far
    beyond any clock. They read as unknown, not as nonsense percentages."""
    device = await fleet.register()
    ws, _ = await fleet.login(device)
    weird = {
        "CPU_info": {
            "user_cpu_time": -5,
            "system_cpu_time": 1,
            "idle_cpu_time": 1,
            "io_wait_cpu_time": 1,
        },
        "Memory_info": {"total_memory_mb": 1000, "free_memory_mb": 10**19},
        "Disk_info": {"root_used_percent": 300.0},
        "extra": {"anything": [1, "two", None]},
    }
    await ws.send(protocol.status_upload(device["device_id"], weird))
    assert (await recv_json(ws))["type"] == protocol.STATUS_RESPONSE
    status, text = await raw_status(fleet, device)
    data = strict(text)["data"]
    assert (status, data["memory_used_percent"], data["disk_used_percent"]) == (200, None, None)
    assert data["latest"]["extra"] == {"anything": [1, "two", None]}
    await ws.close()


class BreakingEvents(SessionEvents):
    """Session events whose delivery of one kind of event raises: stands for any bug
    on the path that handles a device's frames."""

    def __init__(self, breaks: type) -> None:
        super().__init__()
        self.breaks = breaks

    def publish(self, event: object) -> None:
        if isinstance(event, self.breaks):
            raise RuntimeError("a bug while handling a frame")
        super().publish(event)


async def test_a_handler_that_crashes_still_detaches_its_session(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    password = "a-long-password"
    await store.devices.create(
        {
            "device_id": 42,
            "name": "cam",
            "type": "camera",
            "hardware_sn": "SN",
            "hardware_model": "M",
            "secret": await hash_password(password, 4),
        }
    )
    events = BreakingEvents(StatusReceived)
    live, recorder = LiveStatusBook(), Recorder(store, "crash-test", lambda: "127.0.0.1:1")
    live.subscribe(events)
    recorder.subscribe(events)
    left: list[Left] = []
    events.on(Left, left.append)
    table = SessionTable(events)
    gate = LoginGate(store, FAST, 4)
    timings = Timings(tolerance=5, tolerance_after_failure=5, login_timeout=5)

    async def handle(websocket: ServerConnection) -> None:
        await DeviceConnection(websocket, timings, gate, table, events).run()

    writer = asyncio.create_task(recorder.run())
    async with serve(handle, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send(json.dumps({"device_id": "42", "password": password}))
            assert (await recv_json(ws))["status"] == "success"
            assert 42 in table
            await ws.send(protocol.status_upload("42", STATUS))
            code, _ = await closed_with(ws)
    await recorder.drained()
    writer.cancel()
    assert code == 1011
    assert 42 not in table and live.get(42) is None
    assert [(e.device_id, e.cause) for e in left] == [(42, "internal_error")]
    assert (await store.devices.get(42))["state"] == "offline"
    assert "device connection failed" in caplog.text


# --- 2. the attempt limit is keyed on the device, however its id is written --------------


async def test_zero_padded_ids_share_the_attempt_limit_and_never_log_in(store: Store) -> None:
    settings = replace(FAST, login_attempts_per_device=3, login_failures_per_address=100)
    async with running_fleet(store, settings) as fleet:
        device = await fleet.register()
        answers = []
        for padding in ("0", "00", "000", "0000"):
            ws = await fleet.connect()
            padded = padding + device["device_id"]
            await ws.send(json.dumps({"device_id": padded, "password": device["password"]}))
            answers.append((await recv_json(ws))["message"])
        assert answers == [protocol.MSG_UNKNOWN_DEVICE] * 3 + [protocol.MSG_TOO_MANY_LOGINS]
        ws = await fleet.connect()  # the canonical id is the same device: limited too
        await ws.send(json.dumps({"device_id": device["device_id"], "password": "x" * 12}))
        assert (await recv_json(ws))["message"] == protocol.MSG_TOO_MANY_LOGINS


# --- 3. malformed secrets are ordinary failed logins --------------------------------------


async def test_overlong_passwords_and_odd_tokens_are_counted_failures(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    settings = replace(FAST, login_attempts_per_device=1000, login_failures_per_address=4)
    async with running_fleet(store, settings) as fleet:
        device = await fleet.register()
        frames = [
            {"device_id": device["device_id"], "password": "p" * 100},
            {"device_id": device["device_id"], "token": "tök.én.ü.ñ"},
            {"device_id": device["device_id"], "password": "\ud800 lone surrogate"},
            {"device_id": device["device_id"], "token": "a" * 5000},
        ]
        answers = []
        for frame in [*frames, frames[0]]:
            ws = await fleet.connect()
            await ws.send(json.dumps(frame))
            answers.append((await recv_json(ws))["message"])
            assert (await closed_with(ws))[0] == 1008
    assert answers == [
        protocol.MSG_WRONG_PASSWORD,
        protocol.MSG_BAD_TOKEN,
        protocol.MSG_NO_SECRET,
        protocol.MSG_NO_SECRET,
        protocol.MSG_TOO_MANY_LOGINS,
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- 4. a credential change ends what was issued under the old one ------------------------


async def test_a_token_from_before_disabling_stays_dead_after_enabling(fleet: Fleet) -> None:
    device = await fleet.register()
    ws, answer = await fleet.login(device)
    token = answer["data"]["token"]
    await ws.close()
    path = f"/api/v1/devices/{device['device_id']}"
    await fleet.api.patch(path, {"disabled": True})
    await fleet.api.patch(path, {"disabled": False})
    again = await fleet.connect()
    await again.send(json.dumps({"device_id": device["device_id"], "token": token}))
    assert (await recv_json(again))["message"] == protocol.MSG_BAD_TOKEN


async def test_a_password_change_ends_the_session_that_used_the_old_one(fleet: Fleet) -> None:
    device = await fleet.register()
    ws, _ = await fleet.login(device)
    await fleet.api.patch(f"/api/v1/devices/{device['device_id']}", {"password": "n" * 16})
    assert await closed_with(ws) == (1008, "device credentials_changed")
    events = await fleet.events(device)
    assert events[-1]["detail"] == {"reason": "credentials_changed"}


async def test_deleting_a_group_with_its_devices_ends_their_sessions(fleet: Fleet) -> None:
    device = await fleet.register()
    group = (await fleet.api.post("/api/v1/groups", {"name": "doomed"})).data
    await fleet.api.put(f"/api/v1/groups/{group['group_id']}/devices/{device['device_id']}")
    ws, _ = await fleet.login(device)
    await fleet.api.delete(f"/api/v1/groups/{group['group_id']}/devices?delete_devices=true")
    assert await closed_with(ws) == (1008, "device deleted")


# --- 6. a database gone silent: commands still reach a connected device ----------------


async def test_a_connected_device_takes_commands_while_the_database_is_silent(
    store_behind_proxy: tuple[Store, TcpProxy],
) -> None:
    store, proxy = store_behind_proxy
    async with running_fleet(store, FAST) as fleet:
        device = await fleet.register()
        ws, _ = await fleet.login(device)
        await fleet.settled()
        proxy.freeze()
        path = f"/api/v1/devices/{device['device_id']}"
        (await fleet.api.get(path)).failure(503, "DATABASE_ERROR")  # noticed
        sending = asyncio.create_task(fleet.api.post(path + "/commands", {"order": "blink"}))
        order = await recv_json(ws)
        request_id = order["Headers"]["request_id"]
        await ws.send(protocol.command_result("success", "blinked", request_id=request_id))
        assert (await sending).data["message"] == "blinked"
        unknown = await fleet.api.post("/api/v1/devices/1234567/commands", {"order": "x"})
        unknown.failure(503, "DATABASE_ERROR")  # offline, or no such device: cannot tell
        proxy.thaw()
        await ws.close()
