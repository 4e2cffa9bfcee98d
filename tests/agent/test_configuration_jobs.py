"""Configuration jobs over real sockets, on SQLite and MariaDB: each admitted
device's document is written through the desired-configuration path and the
device succeeds by reporting that version (real agents); a refusal fails it, a
version-1 device fails as unsupported, a silent device times out, an offline one
takes it when it returns, and a controller restarted mid-rollout writes nobody's
document twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent import protocol
from edgefleet.agent.runner import Agent
from edgefleet.controller.settings import JobSettings
from edgefleet.controller.store import Store
from edgefleet.controller.store.configs import UNSUPPORTED
from tests.agent.conftest import RAW_CLIENTS, agent_settings, running_agent
from tests.conftest import eventually
from tests.southbound.conftest import Fleet, running_fleet
from tests.southbound.test_config_push import config_device, config_of, config_path, next_update
from tests.southbound.test_jobs import counted, executions, in_state, until

FAST = JobSettings(tick=0.02, minute=0.2)
# The raw clients here (``old``, ``quiet``, ``back``) send no heartbeats, and a
# configuration job's timeout only starts once a scheduler pass sees the device
# online: none may turn unknown meanwhile (``RAW_CLIENTS``).


async def start(fleet: Fleet, devices: list[dict[str, Any]], **fields: Any) -> str:
    body = {
        "name": "exposure-night",
        "target": {"device_ids": [d["device_id"] for d in devices]},
        "action": {"configuration": {"patch": {"exposure": 30}}},
        "rollout": {"max_per_minute": 600},
        "device_timeout": 5,
        **fields,
    }
    answer = await fleet.api.post("/api/v1/jobs", body)
    assert answer.status == 201, answer.body
    return str(answer.data["job_id"])


def handler(refusal: str | None) -> Any:
    def setup(agent: Agent) -> None:
        @agent.on_config
        async def apply(config: dict[str, Any]) -> None:
            if refusal is not None:
                raise ValueError(refusal)

    return setup


async def test_each_device_reports_the_version_written_or_fails_saying_why(
    store: Store, tmp_path: Path
) -> None:
    async with running_fleet(store, RAW_CLIENTS, jobs=FAST) as fleet:
        good, picky, old = [await fleet.register() for _ in range(3)]
        await fleet.api.put(config_path(good), {"config": {"mode": "night"}})
        ws, _ = await fleet.login(old)  # version 1: no config extension

        async def known_unsupported() -> bool:
            return (await config_of(fleet, old))["reason"] == UNSUPPORTED

        await eventually(known_unsupported)
        for folder in ("good", "picky"):
            (tmp_path / folder).mkdir()
        settings = [
            agent_settings(fleet, device, tmp_path / name)
            for device, name in ((good, "good"), (picky, "picky"))
        ]
        async with (
            running_agent(settings[0], handler(None)),
            running_agent(settings[1], handler("this camera has no exposure control")),
        ):
            job_id = await start(fleet, [good, picky, old])
            finished = await until(fleet, job_id, in_state("finished"))
        assert finished["action"] == {"configuration": {"patch": {"exposure": 30}}}
        assert (finished["counts"]["succeeded"], finished["counts"]["failed"]) == (1, 2)
        rows = {row["device_id"]: row for row in await executions(fleet, job_id)}
        # The patch went on top of the device's own document, through the usual path.
        assert rows[good["device_id"]]["state"] == "succeeded"
        assert rows[good["device_id"]]["config_version"] == 2
        document = await config_of(fleet, good)
        assert document["desired"] == {"mode": "night", "exposure": 30}
        assert document["in_sync"] is True and document["reported_version"] == 2
        assert rows[picky["device_id"]]["state"] == "failed"
        assert rows[picky["device_id"]]["result_message"].startswith(
            "the device could not apply version 1: "
        )
        assert "this camera has no exposure control" in rows[picky["device_id"]]["result_message"]
        assert rows[old["device_id"]]["state"] == "failed"
        assert rows[old["device_id"]]["result_message"] == UNSUPPORTED
        assert (await config_of(fleet, old))["desired_version"] == 0  # never written
        await ws.close()


async def test_a_silent_device_times_out_and_an_offline_one_takes_it_when_it_returns(
    store: Store,
) -> None:
    async with running_fleet(store, RAW_CLIENTS, jobs=FAST) as fleet:
        silent, offline = await fleet.register(), await fleet.register()
        quiet = await config_device(fleet, silent)
        job_id = await start(
            fleet,
            [silent, offline],
            action={"configuration": {"config": {"exposure": 45}}},
            device_timeout=2.0,  # also the time ``back`` has to answer, on a busy machine
        )
        sent = await next_update(quiet)  # and never answers
        assert sent["data"] == {"version": 1, "config": {"exposure": 45}}
        await until(fleet, job_id, counted("timed_out", 1))
        # Admitted with the silent one, offline, it waits for the deadline, not the timeout.
        await asyncio.sleep(0.5)
        waiting = {row["device_id"]: row for row in await executions(fleet, job_id)}
        assert waiting[offline["device_id"]]["state"] == "queued"
        back = await config_device(fleet, offline)
        update = await next_update(back)
        assert update["data"] == {"version": 1, "config": {"exposure": 45}}
        request_id = update["Headers"]["request_id"]
        await back.send(protocol.config_report(1, {"exposure": 45}, None, request_id))
        finished = await until(fleet, job_id, in_state("finished"))
        assert (finished["counts"]["succeeded"], finished["counts"]["timed_out"]) == (1, 1)
        rows = {row["device_id"]: row for row in await executions(fleet, job_id)}
        assert rows[silent["device_id"]]["result_message"] == "no report of version 1 in 2 s"
        for socket in (quiet, back):
            await socket.close()


async def test_a_controller_restarted_mid_rollout_writes_nobody_twice(store: Store) -> None:
    slow = JobSettings(tick=0.02, minute=0.3)
    async with running_fleet(store, RAW_CLIENTS, jobs=slow) as fleet:
        devices = [await fleet.register() for _ in range(4)]
        job_id = await start(fleet, devices, rollout={"max_per_minute": 1})
        await until(fleet, job_id, counted("queued", 2))
    async with running_fleet(store, RAW_CLIENTS, jobs=slow) as restarted:
        await until(restarted, job_id, counted("queued", 4))

        async def all_written() -> list[dict[str, Any]] | None:
            rows = await executions(restarted, job_id)
            return rows if all(row["config_version"] for row in rows) else None

        rows = await eventually(all_written)
        assert [row["config_version"] for row in rows] == [1, 1, 1, 1]
        for device in devices:
            document = await config_of(restarted, device)
            assert (document["desired"], document["desired_version"]) == ({"exposure": 30}, 1)


@pytest.mark.parametrize(
    ("configuration", "problem"),
    [
        ({"config": {"a": 1}, "patch": {"b": 2}}, "body field 'action.configuration': give"),
        ({}, "body field 'action.configuration': give"),
        ({"config": {"blob": "x" * 40_000}}, "over the 32768-byte limit"),
    ],
)
async def test_a_bad_configuration_job_is_refused_saying_what_is_wrong(
    store: Store, configuration: dict[str, Any], problem: str
) -> None:
    async with running_fleet(store, RAW_CLIENTS, jobs=FAST) as fleet:
        device = await fleet.register()
        answer = await fleet.api.post(
            "/api/v1/jobs",
            {
                "name": "n",
                "target": {"device_ids": [device["device_id"]]},
                "action": {"configuration": configuration},
                "rollout": {"max_per_minute": 1},
            },
        )
        assert problem in answer.failure(400, "GENERAL_ERROR")
