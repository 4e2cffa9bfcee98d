"""The southbound end to end: real WebSocket devices speaking version 1, the REST
API beside it, the database underneath (SQLite and MariaDB)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed

from edgefleet.agent import protocol
from edgefleet.controller.store import Store
from edgefleet.controller.store.sessions import SessionChange
from tests.conftest import eventually
from tests.southbound.conftest import (
    FAST,
    SHORT_TOLERANCE,
    STAYS_UNKNOWN,
    Fleet,
    ping,
    recv_json,
    running_fleet,
)

STATUS = {
    "CPU_info": {
        "user_cpu_time": 100.0,
        "system_cpu_time": 50.0,
        "idle_cpu_time": 850.0,
        "io_wait_cpu_time": 0.0,
    },
    "Memory_info": {"total_memory_mb": 1000, "free_memory_mb": 300, "buff_cache_mb": 100},
    "Disk_info": {
        "root_total_size_mb": 40000,
        "root_used_size_mb": 10000,
        "root_used_percent": 25.0,
    },
    "dev_state": "online",
}


async def closed_with(ws, timeout: float = 3.0) -> tuple[int | None, str]:
    async with asyncio.timeout(timeout):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
    return ws.close_code, ws.close_reason


async def test_version_1_device_logs_in_and_comes_online(fleet: Fleet) -> None:
    device = await fleet.register()
    ws, answer = await fleet.login(device)
    assert answer["data"]["device_id"] == device["device_id"]
    assert answer["data"]["token"]  # extension: a v1 device ignores it
    await fleet.settled()
    assert await fleet.state(device) == "online"
    await ws.send(ping())
    assert await recv_json(ws) == {"type": "ping_pong", "Headers": {}, "data": "pong"}
    assert [e["event"] for e in await fleet.events(device)][-2:] == ["connected", "online"]
    stats = (await fleet.api.get("/api/v1/stats")).data
    assert stats["connected"] == 1 and stats["by_state"]["online"] == 1
    await ws.close()


async def test_login_by_serial_number_and_model(fleet: Fleet) -> None:
    device = await fleet.register(hardware_sn="SN123", hardware_model="ModelB")
    ws, answer = await fleet.login(
        device, device_sn="SN123", device_model="ModelB", password=device["password"]
    )
    assert answer["data"]["device_id"] == device["device_id"]
    await ws.close()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            lambda d: {"device_id": d["device_id"], "password": "wrong password!"},
            protocol.MSG_WRONG_PASSWORD,
        ),
        (
            lambda d: {"device_id": "123456789", "password": "whatever it is"},
            protocol.MSG_UNKNOWN_DEVICE,
        ),
        (lambda d: {"device_id": d["device_id"]}, protocol.MSG_NO_SECRET),
        (
            lambda d: {"device_id": d["device_id"], "token": "forged.1.2.sig"},
            protocol.MSG_BAD_TOKEN,
        ),
    ],
)
async def test_failed_login_gets_its_message_then_1008(fleet: Fleet, frame, message) -> None:
    device = await fleet.register()
    ws = await fleet.connect()
    await ws.send(json.dumps(frame(device)))
    assert await recv_json(ws) == {"status": "fail", "message": message}
    assert (await closed_with(ws))[0] == 1008
    if message in (protocol.MSG_WRONG_PASSWORD, protocol.MSG_BAD_TOKEN):
        events = await fleet.events(device)
        assert events[-1]["event"] == "login_failed"
        assert events[-1]["detail"] == {"reason": message}


async def test_disabled_device_cannot_log_in(fleet: Fleet) -> None:
    device = await fleet.register(disabled=True)
    ws = await fleet.connect()
    await ws.send(json.dumps({"device_id": device["device_id"], "password": device["password"]}))
    assert await recv_json(ws) == {"status": "fail", "message": protocol.MSG_DISABLED}
    assert (await closed_with(ws))[0] == 1008
    events = await fleet.events(device)
    assert (events[-1]["event"], events[-1]["detail"]) == (
        "login_failed", {"reason": protocol.MSG_DISABLED}
    )  # fmt: skip
    assert await fleet.state(device) == "offline"


async def test_no_login_frame_in_time_closes(store: Store) -> None:
    async with running_fleet(store, replace(FAST, login_timeout=0.5)) as fleet:
        ws = await fleet.connect()
        answer = await recv_json(ws)
        assert answer == {"status": "fail", "message": protocol.MSG_LOGIN_TIMEOUT}
        assert (await closed_with(ws))[0] == 1008


async def test_unknown_device_recovers_with_any_frame(store: Store) -> None:
    async with running_fleet(store, STAYS_UNKNOWN) as fleet:
        device = await fleet.register()
        ws, _ = await fleet.login(device)
        await eventually(lambda: fleet.is_(device, "unknown"))
        path = f"/api/v1/devices/{device['device_id']}/commands"
        answer = await fleet.api.post(path, {"order": "x"})
        assert answer.failure(409, "DEVICE_OFFLINE") == "Device state is Unknown!"
        await ws.send(ping())
        await recv_json(ws)
        await fleet.settled()
        assert await fleet.state(device) == "online"
        await ws.close()


async def test_newer_session_supersedes_the_older(fleet: Fleet) -> None:
    device = await fleet.register()
    first, _ = await fleet.login(device)
    second, _ = await fleet.login(device)
    assert await closed_with(first) == (4000, "superseded")
    await second.send(ping())
    assert (await recv_json(second))["data"] == "pong"
    await fleet.settled()
    assert await fleet.state(device) == "online"
    names = [e["event"] for e in await fleet.events(device)]
    assert names[-3:] == ["offline", "connected", "online"]
    await second.close()


async def test_status_upload_is_answered_and_served_live(fleet: Fleet) -> None:
    device = await fleet.register()
    ws, _ = await fleet.login(device)
    path = f"/api/v1/devices/{device['device_id']}/status"
    await ws.send(protocol.status_upload(device["device_id"], STATUS))
    assert (await recv_json(ws))["type"] == "send_statusInfo_response"
    first = (await fleet.api.get(path)).data
    assert first["state"] == "online"
    assert first["cpu_percent"] is None  # needs two uploads
    assert first["memory_used_percent"] == 60.0
    assert first["disk_used_percent"] == 25.0
    later = json.loads(json.dumps(STATUS))
    later["CPU_info"].update(user_cpu_time=130.0, system_cpu_time=60.0, idle_cpu_time=910.0)
    later["extra"] = {"fps": 25}
    await ws.send(protocol.status_upload(device["device_id"], later))
    await recv_json(ws)
    second = (await fleet.api.get(path)).data
    assert second["cpu_percent"] == 40.0  # 40 busy of 100 seconds
    assert second["latest"]["extra"] == {"fps": 25}
    assert second["last_seen"] >= first["last_seen"]
    await ws.close()


async def test_status_for_another_device_is_not_stored(fleet: Fleet) -> None:
    device, other = await fleet.register(), await fleet.register()
    ws, _ = await fleet.login(device)
    other_ws, _ = await fleet.login(other)
    await ws.send(protocol.status_upload(other["device_id"], STATUS))
    await ws.send(ping())
    assert (await recv_json(ws))["data"] == "pong"  # the status got no answer
    for each in (device, other):  # stored for neither the sender nor the one it names
        latest = (await fleet.api.get(f"/api/v1/devices/{each['device_id']}/status")).data
        assert latest["latest"] == {}
    uploads = counted(await scrape_families(fleet), "edgefleet_status_uploads")
    assert uploads == {("foreign_device_id",): 1.0}  # refused and counted, none accepted
    await ws.close()
    await other_ws.close()


async def answer_orders(ws, reply) -> None:
    """A device that answers each order with ``reply(order_frame)``."""
    try:
        async for message in ws:
            frame = json.loads(message)
            if frame.get("type") == "give_order":
                answer = reply(frame)
                if answer:
                    await ws.send(answer)
    except ConnectionClosed:
        pass


async def test_custom_command_reaches_the_device_and_returns_its_result(fleet: Fleet) -> None:
    device = await fleet.register()
    ws, _ = await fleet.login(device)
    seen = []

    def reply(frame):
        seen.append(frame)
        value = frame["data"]["params"]["value"]
        return protocol.command_result("success", "successfully exec order.", {"set": value})

    answering = asyncio.create_task(answer_orders(ws, reply))
    answer = await fleet.api.post(
        f"/api/v1/devices/{device['device_id']}/commands",
        {"order": "set_exposure", "params": {"value": 3}},
    )
    command_id = answer.data["command_id"]
    assert answer.data == {
        "device_id": device["device_id"],
        "command_id": command_id,
        "status": "success",
        "message": "successfully exec order.",
        "data": {"set": 3},
    }
    history = (await fleet.api.get(f"/api/v1/commands/{command_id}")).data
    assert history["state"] == "succeeded" and history["queued"] is False
    assert history["result"] == {"status": "success", "message": answer.data["message"],
                                 "data": {"set": 3}}  # fmt: skip
    assert seen[0]["Headers"]["isInner"] is False
    assert seen[0]["Headers"]["order_type"] == "set_exposure"
    names = [e["event"] for e in await fleet.events(device)]
    assert names[-2:] == ["command_sent", "command_result"]
    await ws.close()
    await answering


async def test_restart_goes_through_the_confirm_handshake(fleet: Fleet) -> None:
    device = await fleet.register()
    ws, _ = await fleet.login(device)
    request = asyncio.create_task(
        fleet.api.post(f"/api/v1/devices/{device['device_id']}/commands", {"order": "restart"})
    )
    order = await recv_json(ws)
    assert order["Headers"] == {
        "isInner": True,
        "order_type": "restart",
        "request_id": order["Headers"]["request_id"],
    }
    await ws.send(protocol.command_result("success", protocol.RESTART_WAIT_MESSAGE))
    assert await recv_json(ws) == {"type": "restart_confirm", "Headers": {}, "data": {}}
    answer = await request
    assert answer.data["status"] == "success"
    await ws.close()


async def test_group_command_fans_out_and_answers_per_device(fleet: Fleet) -> None:
    """Each online device holds its order until every one of them has it: one at a
    time, the first would wait for the others for ever (and time out). Then they
    answer; the offline member is answered for at once."""
    group = await fleet.api.create_group("gates")
    devices = [await fleet.register() for _ in range(4)]
    for device in devices:
        await fleet.api.put(f"/api/v1/groups/{group['group_id']}/devices/{device['device_id']}")
    online = devices[:3]
    holding = 0
    all_have_it = asyncio.Event()

    async def hold_then_answer(ws) -> None:
        nonlocal holding
        order = await recv_json(ws, timeout=5)
        holding += 1
        if holding == len(online):
            all_have_it.set()
        await all_have_it.wait()
        request_id = order["Headers"]["request_id"]
        await ws.send(protocol.command_result("success", "done", request_id=request_id))

    sockets = [(await fleet.login(device))[0] for device in online]
    devices_answering = [asyncio.create_task(hold_then_answer(ws)) for ws in sockets]
    answer = await fleet.api.post(
        f"/api/v1/groups/{group['group_id']}/commands", {"order": "snapshot", "timeout": 5}
    )
    await asyncio.gather(*devices_answering)
    assert holding == len(online)  # all three held it at once
    results = {r["device_id"]: r for r in answer.data["results"]}
    for device in online:
        assert results[device["device_id"]]["status"] == "success"
    offline = results[devices[3]["device_id"]]
    assert offline == {
        "device_id": devices[3]["device_id"],
        "command_id": offline["command_id"],
        "status": "fail",
        "message": "Device is offline!",
        "data": None,
    }
    history = await fleet.api.get(f"/api/v1/commands/{offline['command_id']}")
    assert history.data["state"] == "failed"
    assert history.data["result"]["message"] == "Device is offline!"
    for ws in sockets:
        await ws.close()


async def test_garbage_never_hurts_the_session_or_other_devices(fleet: Fleet) -> None:
    device, neighbour = await fleet.register(), await fleet.register()
    ws, _ = await fleet.login(device)
    other, _ = await fleet.login(neighbour)
    for junk in ("{not json", "[1,2,3]", '{"no": "type"}', '{"type": "from_the_future"}'):
        await ws.send(junk)
    await ws.send(b"\x00\x01binary")
    await ws.send(ping())
    assert (await recv_json(ws))["data"] == "pong"

    await other.send("x" * (70 * 1024))  # over the 64 KiB limit
    assert (await closed_with(other))[0] == 1009
    await ws.send(ping())
    assert (await recv_json(ws))["data"] == "pong"

    async with fleet.api.session.get(fleet.metrics_url) as r:
        text = await r.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    bad = {
        dict(k)["reason"]: v
        for (name, k), v in samples.items()
        if name == "edgefleet_bad_frames_total"
    }
    assert bad == {
        "invalid_json": 1,
        "not_an_object": 1,
        "no_type": 1,
        "unknown_type": 1,
        "binary": 1,
    }
    await ws.close()


async def test_metrics_render_fleet_and_per_device_series(store: Store) -> None:
    """What the devices did, read back from a real /metrics scrape by label and value."""
    async with running_fleet(store, FAST) as fleet:
        device = await fleet.register(name="gate 17", type="camera")
        absent = await fleet.register()
        bad = await fleet.connect()
        await bad.send(json.dumps({"device_id": device["device_id"], "password": "nope nope"}))
        await recv_json(bad)
        first, _ = await fleet.login(device)
        ws, _ = await fleet.login(device)  # supersedes the first session
        await closed_with(first)
        for _ in range(2):
            await ws.send(ping())
            await recv_json(ws)
        await ws.send(protocol.status_upload(device["device_id"], STATUS))
        await recv_json(ws)
        await ws.send(protocol.status_upload(absent["device_id"], STATUS))
        await ws.send("{not json")
        answering = asyncio.create_task(answer_orders(ws, lambda f: protocol.command_result(
            "success" if f["Headers"]["order_type"] == "snap" else "fail", "done",
            request_id=f["Headers"]["request_id"])))  # fmt: skip
        commands = "/api/v1/devices/{}/commands"
        for order in ("snap", "zoom"):
            await fleet.api.post(commands.format(device["device_id"]), {"order": order})
        await fleet.api.post(commands.format(absent["device_id"]), {"order": "snap"})

        families = await scrape_families(fleet)
        up = families["edgefleet_device_up"].samples
        assert [(s.labels, s.value) for s in up] == [({
            "device_id": device["device_id"], "name": "gate 17", "namespace": "",
            "type": "camera", "state": "online"}, 1.0)]  # fmt: skip
        assert families["edgefleet_device_memory_used_percent"].samples[0].value == 60.0
        assert counted(families, "edgefleet_connections") == {(): 3.0}
        assert counted(families, "edgefleet_logins") == {
            ("success",): 2.0, ("wrong_password",): 1.0
        }  # fmt: skip
        assert counted(families, "edgefleet_heartbeats") == {(): 2.0}
        assert counted(families, "edgefleet_status_uploads") == {
            ("accepted",): 1.0, ("foreign_device_id",): 1.0
        }  # fmt: skip
        assert counted(families, "edgefleet_bad_frames") == {("invalid_json",): 1.0}
        assert counted(families, "edgefleet_commands") == {
            ("custom", "success"): 1.0, ("custom", "fail"): 1.0, ("custom", "offline"): 1.0
        }  # fmt: skip
        # Every frame after the login is one gap: pings, uploads, junk, results.
        assert histogram_count(families, "edgefleet_frame_gap_seconds") == 7
        assert histogram_count(families, "edgefleet_command_duration_seconds") == 2
        sessions = {s.labels["state"]: s.value for s in families["edgefleet_sessions"].samples}
        assert sessions == {"online": 1.0, "unknown": 0.0}
        assert not any(name.endswith("_created") for name in families)
        assert "process_resident_memory_bytes" in {
            s.name for f in families.values() for s in f.samples
        }

        await ws.close()
        await answering

        async def every_cause_counted() -> dict[tuple[str, ...], float] | None:
            found = counted(await scrape_families(fleet), "edgefleet_disconnects")
            return found if len(found) == 3 else None

        assert await eventually(every_cause_counted) == {
            ("login_failed",): 1.0, ("superseded",): 1.0, ("closed_by_device",): 1.0
        }  # fmt: skip


async def scrape_families(fleet: Fleet) -> dict[str, Any]:
    async with fleet.api.session.get(fleet.metrics_url) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return {f.name: f for f in text_string_to_metric_families(await response.text())}


def counted(families: dict[str, Any], name: str) -> dict[tuple[str, ...], float]:
    """A counter's non-zero values by their label values."""
    return {
        tuple(s.labels.values()): s.value
        for s in families[name].samples
        if s.name == name + "_total" and s.value
    }


def histogram_count(families: dict[str, Any], name: str) -> float:
    [count] = [s.value for s in families[name].samples if s.name == name + "_count"]
    return float(count)


async def test_session_token_resumes_without_password_until_the_password_changes(
    fleet: Fleet,
) -> None:
    device = await fleet.register()
    ws, answer = await fleet.login(device)
    token = answer["data"]["token"]
    await ws.close()
    resumed, again = await fleet.login(device, device_id=device["device_id"], token=token)
    assert again["data"]["device_id"] == device["device_id"]
    await resumed.close()
    await fleet.api.patch(
        f"/api/v1/devices/{device['device_id']}", {"password": "a brand new password"}
    )
    ws = await fleet.connect()
    await ws.send(json.dumps({"device_id": device["device_id"], "token": token}))
    assert (await recv_json(ws))["message"] == protocol.MSG_BAD_TOKEN


async def test_stopping_closes_sessions_1001_and_marks_devices_offline(fleet: Fleet) -> None:
    device = await fleet.register()
    ws, _ = await fleet.login(device)
    await fleet.settled()
    await fleet.southbound.stop()
    assert await closed_with(ws) == (1001, "server shutting down")
    assert await fleet.state(device) == "offline"
    assert (await fleet.events(device))[-1]["detail"] == {"reason": "server_shutdown"}
    assert (await fleet.api.get("/api/v1/stats")).data["connected"] == 0


async def test_login_attempts_are_rate_limited_per_device_and_address(store: Store) -> None:
    settings = replace(FAST, login_attempts_per_device=3, login_failures_per_address=4)
    async with running_fleet(store, settings) as fleet:
        device = await fleet.register()

        async def attempt(frame: dict) -> str:
            ws = await fleet.connect()
            await ws.send(json.dumps(frame))
            answer = await recv_json(ws)
            await ws.close()
            return answer.get("message", "ok")

        good = {"device_id": device["device_id"], "password": device["password"]}
        assert [await attempt(good) for _ in range(4)] == ["ok"] * 3 + [
            protocol.MSG_TOO_MANY_LOGINS
        ]
        other = await fleet.register()
        wrong = {"device_id": other["device_id"], "password": "not the password"}
        third = await fleet.register()
        answers = [await attempt(wrong) for _ in range(2)]
        answers += [await attempt({**wrong, "device_id": third["device_id"]}) for _ in range(3)]
        assert answers == [protocol.MSG_WRONG_PASSWORD] * 4 + [protocol.MSG_TOO_MANY_LOGINS]


async def test_start_releases_sessions_left_by_a_crashed_run(store: Store) -> None:
    async with running_fleet(store, FAST) as fleet:
        device = await fleet.register()
    # What a crashed run of this instance leaves: a session row, the device online.
    await store.sessions.apply(
        FAST.instance,
        [
            SessionChange(
                "connected", int(device["device_id"]), "connected", address="10.0.0.9:9091"
            )
        ],
    )
    async with running_fleet(store, FAST) as restarted:
        assert await restarted.state(device) == "offline"
        events = await restarted.events(device)
        assert events[-1]["event"] == "offline"
        assert events[-1]["detail"] == {"reason": "instance_restarted"}
        assert (await restarted.api.get("/api/v1/stats")).data["connected"] == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda api, path: api.patch(path, {"disabled": True}), "disabled"),
        (lambda api, path: api.delete(path), "deleted"),
    ],
)
async def test_disabling_or_deleting_a_device_ends_its_session(
    fleet: Fleet, change, reason: str
) -> None:
    device = await fleet.register()
    ws, _ = await fleet.login(device)
    await change(fleet.api, f"/api/v1/devices/{device['device_id']}")
    assert await closed_with(ws) == (1008, f"device {reason}")
    events = await fleet.events(device)
    assert events[-1]["event"] == "offline"
    assert events[-1]["detail"] == {"reason": reason}


async def test_a_device_on_a_metered_link_gets_longer_intervals_and_tolerance(
    store: Store,
) -> None:
    # Beating every 2 s instead of 0.2 s, a metered device is tolerated 3 s of silence
    # where a version-1 device is tolerated 0.3 s.
    settings = replace(
        SHORT_TOLERANCE, metered_heartbeat_interval=2.0, metered_status_interval=60.0
    )
    async with running_fleet(store, settings) as fleet:
        device = await fleet.register()
        login = {"device_id": device["device_id"], "password": device["password"]}
        ws, answer = await fleet.login(device, **login, extensions=["token", "metered"])
        assert (answer["data"]["heartbeat_interval"], answer["data"]["status_interval"]) == (
            2.0,
            60.0,
        )
        assert answer["data"]["status_change_percent"] == settings.metered_status_change
        plain_device = await fleet.register()
        plain, answer = await fleet.login(plain_device)
        assert answer["data"]["heartbeat_interval"] == FAST.heartbeat_interval
        assert "status_change_percent" not in answer["data"]

        async def plain_missed() -> bool:
            await fleet.settled()
            return await fleet.state(plain_device) != "online"

        await eventually(plain_missed)  # both silent since they logged in
        assert await fleet.state(device) == "online"
        await ws.close()
        await plain.close()
