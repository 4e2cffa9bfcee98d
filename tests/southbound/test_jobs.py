"""Jobs rolled out over real sockets to raw device clients, on SQLite and MariaDB,
with the rollout minute scaled down (``JobSettings.minute``): the rate is kept,
failures past the threshold abort the job and nothing more is sent, pause, resume
and cancel, an offline device runs the command when it returns, a device that does
not answer times out, and a controller restarted mid-rollout sends nobody twice."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from websockets.asyncio.client import ClientConnection

from edgefleet.agent import protocol
from edgefleet.controller.settings import JobSettings
from edgefleet.controller.store import Store
from edgefleet.controller.store.database import utcnow
from edgefleet.controller.store.schema import commands
from tests.conftest import eventually
from tests.controller.test_api_stream import stream
from tests.southbound.conftest import FAST, Fleet, nothing_comes, running_fleet
from tests.southbound.test_queued_commands import next_order


def scaled(minute: float) -> JobSettings:
    return JobSettings(tick=0.02, minute=minute)


async def start_job(fleet: Fleet, devices: list[dict[str, Any]], **fields: Any) -> str:
    body = {
        "name": "exposure-night",
        "target": {"device_ids": [d["device_id"] for d in devices]},
        "action": {"command": {"order": "set_exposure", "params": {"value": 30}}},
        "rollout": {"max_per_minute": 1},
        **fields,
    }
    answer = await fleet.api.post("/api/v1/jobs", body)
    assert answer.status == 201, answer.body
    assert answer.data["state"] == "running"
    return answer.data["job_id"]


async def job(fleet: Fleet, job_id: str) -> dict[str, Any]:
    return (await fleet.api.get(f"/api/v1/jobs/{job_id}")).data


async def executions(fleet: Fleet, job_id: str) -> list[dict[str, Any]]:
    return (await fleet.api.get(f"/api/v1/jobs/{job_id}/devices?per_page=500")).data["items"]


def counted(state: str, at_least: int) -> Any:
    def check(row: dict[str, Any]) -> dict[str, Any] | None:
        return row if row["counts"][state] >= at_least else None

    return check


async def until(fleet: Fleet, job_id: str, check: Any) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        return check(await job(fleet, job_id))

    return await eventually(probe)


async def four_admitted_slowly(fleet: Fleet, admitted: int) -> tuple[list[dict[str, Any]], str]:
    """Four offline devices, one admitted per rollout minute; returns once
    ``admitted`` of them are."""
    devices = [await fleet.register() for _ in range(4)]
    job_id = await start_job(fleet, devices)
    await until(fleet, job_id, counted("queued", admitted))
    return devices, job_id


def in_state(state: str) -> Any:
    return lambda row: row if row["state"] == state else None


async def answer(ws: ClientConnection, order: dict[str, Any], status: str) -> None:
    request_id = order["Headers"]["request_id"]
    await ws.send(protocol.command_result(status, f"device says {status}", None, request_id))


async def test_devices_are_admitted_at_the_rollout_rate(store: Store) -> None:
    # Two devices per rollout minute of half a second: one every quarter second.
    async with running_fleet(store, FAST, jobs=scaled(0.5)) as fleet:
        devices = [await fleet.register() for _ in range(5)]
        job_id = await start_job(fleet, devices, rollout={"max_per_minute": 2})
        await until(fleet, job_id, counted("queued", 5))
        rows = await executions(fleet, job_id)
        admitted = sorted(datetime.fromisoformat(row["queued_at"]) for row in rows)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(admitted)]
        assert min(gaps) >= 0.249, gaps
        # Each device's command waits for it in its history, sent by the job.
        history = await fleet.api.get(f"/api/v1/devices/{devices[0]['device_id']}/commands")
        (command,) = history.data["items"]
        assert command["state"] == "queued" and command["order"] == "set_exposure"
        assert command["actor"] == f"job {job_id}"
        assert command["command_id"] == rows[0]["command_id"]


async def test_failures_past_the_threshold_abort_the_job_and_nothing_more_is_sent(
    store: Store,
) -> None:
    # One device per rollout minute of 2 s: the abort (the results stored, the next
    # pass) has the 2 s between the 2nd admission and the 3rd, even on a busy machine.
    async with running_fleet(store, FAST, jobs=scaled(2.0)) as fleet:
        devices = [await fleet.register() for _ in range(4)]
        sockets = [(await fleet.login(device))[0] for device in devices]
        job_id = await start_job(
            fleet, devices, abort={"failure_percent": 50, "min_executed": 2}, retries=0
        )
        for ws in sockets[:2]:
            await answer(ws, await next_order(ws), "fail")
        aborted = await until(fleet, job_id, in_state("aborted"))
        assert aborted["reason"].startswith("2 of 2 executed devices failed (100 %)")
        assert aborted["counts"]["failed"] == 2 and aborted["counts"]["canceled"] == 2
        assert aborted["finished_at"] is not None
        # Watched past when the 3rd would have been admitted (a rollout minute after
        # the 2nd, which came before the abort): nothing comes to either.
        quiet = await asyncio.gather(*(nothing_comes(ws, 3.0) for ws in sockets[2:]))
        assert quiet == [True, True]
        rows = await executions(fleet, job_id)
        assert [row["state"] for row in rows] == ["failed", "failed", "canceled", "canceled"]
        assert rows[0]["result_message"] == "device says fail"
        again = await fleet.api.post(f"/api/v1/jobs/{job_id}/resume", {})
        assert "is aborted: it cannot be resumed" in again.failure(409, "COMMAND_ERROR")
        for ws in sockets:
            await ws.close()


async def test_pause_stops_admissions_resume_continues_and_cancel_sends_nothing_more(
    store: Store,
) -> None:
    # A rollout minute of 1 s: the poll that sees the 1st admission and the pause
    # come before the 3rd admission (2 s on), even on a busy machine.
    async with running_fleet(store, FAST, jobs=scaled(1.0)) as fleet:
        devices, job_id = await four_admitted_slowly(fleet, 1)
        paused = await fleet.api.post(f"/api/v1/jobs/{job_id}/pause", {})
        assert paused.data["state"] == "paused"
        await asyncio.sleep(2.5)  # 2.5 rollout minutes: nothing is admitted meanwhile
        still = await job(fleet, job_id)
        assert still["state"] == "paused"
        assert (still["counts"]["queued"], still["counts"]["pending"]) in {(1, 3), (2, 2)}
        held = still["counts"]["queued"]
        resumed = await fleet.api.post(f"/api/v1/jobs/{job_id}/resume", {})
        assert resumed.data["state"] == "running"
        await until(fleet, job_id, counted("queued", held + 1))
        canceled = await fleet.api.post(f"/api/v1/jobs/{job_id}/cancel", {})
        assert canceled.data["state"] == "canceled"
        assert canceled.data["counts"]["canceled"] == 4
        for device in devices:
            # The stream's job.progress, from each device's log: every one saw it end.
            log = await fleet.api.get(
                f"/api/v1/devices/{device['device_id']}/events", params={"event": "job_progress"}
            )
            assert log.data["items"][0]["detail"] == {"job_id": job_id, "state": "canceled"}
            ws, _ = await fleet.login(device)
            assert await nothing_comes(ws)
            await ws.close()
        again = await fleet.api.post(f"/api/v1/jobs/{job_id}/cancel", {})
        assert "is canceled: it cannot be canceled" in again.failure(409, "COMMAND_ERROR")


async def test_an_offline_device_runs_it_when_it_returns_and_a_silent_one_times_out(
    store: Store,
) -> None:
    async with running_fleet(store, FAST, jobs=scaled(0.1)) as fleet:
        online, silent, offline = [await fleet.register() for _ in range(3)]
        ws, _ = await fleet.login(online)
        quiet, _ = await fleet.login(silent)
        job_id = await start_job(
            fleet,
            [online, silent, offline],
            rollout={"max_per_minute": 60, "increase_factor": 2, "increase_after": 1},
            device_timeout=2.0,  # for the devices that answer too, on a busy machine
        )
        await answer(ws, await next_order(ws), "success")
        await next_order(quiet)  # and never answers
        await until(fleet, job_id, counted("timed_out", 1))
        assert (await job(fleet, job_id))["state"] == "running"  # the offline one is due
        back, _ = await fleet.login(offline)
        order = await next_order(back)
        assert order["data"]["params"] == {"value": 30}
        await answer(back, order, "success")
        finished = await until(fleet, job_id, in_state("finished"))
        assert finished["counts"]["succeeded"] == 2 and finished["counts"]["timed_out"] == 1
        states = {row["device_id"]: row["state"] for row in await executions(fleet, job_id)}
        assert states == {
            online["device_id"]: "succeeded",
            silent["device_id"]: "timed_out",
            offline["device_id"]: "succeeded",
        }
        for socket in (ws, quiet, back):
            await socket.close()


async def test_a_controller_restarted_mid_rollout_goes_on_without_sending_twice(
    store: Store,
) -> None:
    async with running_fleet(store, FAST, jobs=scaled(0.3)) as fleet:
        devices, job_id = await four_admitted_slowly(fleet, 2)
    async with running_fleet(store, FAST, jobs=scaled(0.3)) as restarted:
        await until(restarted, job_id, counted("queued", 4))
        for device in devices:
            history = await restarted.api.get(f"/api/v1/devices/{device['device_id']}/commands")
            assert history.data["total"] == 1
            ws, _ = await restarted.login(device)
            await answer(ws, await next_order(ws), "success")
            assert await nothing_comes(ws)
            await ws.close()
        finished = await until(restarted, job_id, in_state("finished"))
        assert finished["counts"]["succeeded"] == 4


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"target": {}}, "body field 'target': give exactly one of"),
        ({"action": {}}, "body field 'action': give exactly one of"),
        ({"target": {"selector": "site in ("}}, "body field 'target.selector'"),
        ({"rollout": {"max_per_minute": 0}}, "'rollout.max_per_minute'"),
    ],
)
async def test_a_bad_job_is_refused_saying_what_is_wrong(
    fleet: Fleet, body: dict[str, Any], problem: str
) -> None:
    device = await fleet.register()
    base = {
        "name": "n",
        "target": {"device_ids": [device["device_id"]]},
        "action": {"command": {"order": "x"}},
        "rollout": {"max_per_minute": 1},
    }
    answer = await fleet.api.post("/api/v1/jobs", {**base, **body})
    assert problem in answer.failure(400, "GENERAL_ERROR")
    (await fleet.api.get("/api/v1/jobs/42")).failure(404, "COMMAND_ERROR")
    assert (await fleet.api.get("/api/v1/jobs")).data["total"] == 0


async def test_jobs_need_jobs_write_and_a_caller_limited_to_groups_targets_its_devices(
    fleet: Fleet,
) -> None:
    group = await fleet.api.create_group("night-cams")
    site = {"site": "chengdu"}
    ours, theirs = await fleet.register(labels=site), await fleet.register(labels=site)
    await fleet.api.put(f"/api/v1/groups/{group['group_id']}/devices/{ours['device_id']}")
    limited = await fleet.api.user("limited", [{"role": "operator", "group_id": group["group_id"]}])
    viewer = await fleet.api.user("viewer", [{"role": "viewer"}])
    body = {
        "name": "exposure-night",
        "action": {"command": {"order": "set_exposure", "params": {"value": 30}}},
        "rollout": {"max_per_minute": 1},
    }
    refused = await viewer.post("/api/v1/jobs", {**body, "target": {"group_id": group["group_id"]}})
    assert "jobs:write" in refused.failure(403, "AUTH_ERROR")
    # Within its group: by group, by selector (resolved among its devices only).
    by_group = await limited.post(
        "/api/v1/jobs", {**body, "target": {"group_id": group["group_id"]}}
    )
    assert by_group.status == 201 and by_group.data["counts"]["pending"] == 1
    everyone = await limited.post("/api/v1/jobs", {**body, "target": {"selector": "site=chengdu"}})
    assert everyone.status == 201, everyone.body
    assert sum(everyone.data["counts"].values()) == 1
    outside = await limited.post(
        "/api/v1/jobs", {**body, "target": {"device_ids": [ours["device_id"], theirs["device_id"]]}}
    )
    outside.failure(404, "DEVICEOP_ERROR")
    # A job reaching another device is not theirs: not listed, not shown, not canceled.
    admins = await start_job(fleet, [ours, theirs])
    listed = (await limited.get("/api/v1/jobs")).data["items"]
    assert {row["job_id"] for row in listed} == {by_group.data["job_id"], everyone.data["job_id"]}
    (await limited.get(f"/api/v1/jobs/{admins}")).failure(404, "COMMAND_ERROR")
    (await limited.get(f"/api/v1/jobs/{admins}/devices")).failure(404, "COMMAND_ERROR")
    (await limited.post(f"/api/v1/jobs/{admins}/cancel", {})).failure(404, "COMMAND_ERROR")
    (await limited.post(f"/api/v1/jobs/{admins}/pause", {})).failure(404, "COMMAND_ERROR")
    assert (await viewer.get(f"/api/v1/jobs/{admins}")).data["state"] == "running"
    canceled = await limited.post(f"/api/v1/jobs/{by_group.data['job_id']}/cancel", {})
    assert canceled.data["state"] == "canceled"
    entries = (await fleet.api.get("/api/v1/audit?action=create_job")).data["items"]
    # Three created; the viewer's refusal and the one for a device outside, too.
    assert sorted(entry["http_status"] for entry in entries) == [201, 201, 201, 403, 404]


async def test_progress_is_on_the_live_stream(fleet: Fleet) -> None:
    device = await fleet.register()
    async with stream(fleet.api, {"types": "job.progress"}) as events:
        job_id = await start_job(fleet, [device])
        [event] = await events.take(1)
    assert event["event"] == "job.progress"
    assert event["data"]["device_id"] == device["device_id"]
    assert event["data"]["data"] == {"job_id": job_id, "state": "queued"}


async def test_an_update_goes_only_to_devices_of_the_artifacts_types(fleet: Fleet) -> None:
    """A camera build never reaches a gateway: the gateway's execution is skipped at
    once, saying why, and does not count as a failure; naming only misfits is a 400."""
    artifact = await fleet.api.upload_artifact("detector", "2.1.0", b"camera build", types="camera")
    camera = await fleet.register(type="camera")
    gateway = await fleet.register(type="gateway")
    action = {"update": {"artifact_id": artifact["artifact_id"]}}
    job_id = await start_job(fleet, [camera, gateway], action=action)
    rows = {row["device_id"]: row for row in await executions(fleet, job_id)}
    skipped = rows[gateway["device_id"]]
    assert skipped["state"] == "skipped" and skipped["command_id"] is None
    assert skipped["result_message"] == (
        f"artifact {artifact['artifact_id']} is for device types camera, not gateway"
    )
    await until(fleet, job_id, counted("queued", 1))
    history = await fleet.api.get(f"/api/v1/devices/{gateway['device_id']}/commands")
    assert history.data["total"] == 0
    ws, _ = await fleet.login(
        camera,
        device_id=camera["device_id"],
        password=camera["password"],
        extensions=["request_id", "update"],
    )
    order = await next_order(ws)
    assert order["data"]["artifact"]["version"] == "2.1.0"
    await ws.send(
        protocol.command_result(
            "success", "installed", {"version": "2.1.0"}, order["Headers"]["request_id"]
        )
    )
    finished = await until(fleet, job_id, in_state("finished"))
    assert (finished["counts"]["succeeded"], finished["counts"]["skipped"]) == (1, 1)
    await ws.close()
    refused = await fleet.api.post(
        "/api/v1/jobs",
        {
            "name": "wrong-build",
            "target": {"device_ids": [gateway["device_id"]]},
            "action": action,
            "rollout": {"max_per_minute": 1},
        },
    )
    assert "no device fits: artifact" in refused.failure(400, "GENERAL_ERROR")


async def test_a_command_whose_result_never_came_back_times_out_at_its_deadline(
    store: Store,
) -> None:
    """Its southbound claimed it, sent it and stopped for good (nothing will write
    its result): the execution ends timed_out once the command's deadline passed,
    instead of staying in progress for ever."""
    async with running_fleet(store, FAST, jobs=scaled(0.3)) as fleet:
        device = await fleet.register()
        job_id = await start_job(fleet, [device], retries=0)
        await until(fleet, job_id, counted("queued", 1))
        async with store.db.begin() as connection:  # what the stopped instance left
            await connection.execute(
                update(commands)
                .where(commands.c.device_id == int(device["device_id"]))
                .values(state="sent", sent_at=utcnow(), deadline=utcnow() - timedelta(seconds=1))
            )
        ended = await until(fleet, job_id, counted("timed_out", 1))
        assert ended["counts"]["in_progress"] == 0
        assert await until(fleet, job_id, lambda row: row if row["state"] == "finished" else None)
