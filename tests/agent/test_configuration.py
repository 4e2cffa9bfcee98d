"""The agent's desired configuration against the real southbound and API, on SQLite
and MariaDB: the handler applies it, the state directory keeps it across runs, a
refusal is reported and resent, and the CLI agent's hook command gets it on stdin."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent.runner import Agent
from edgefleet.agent.settings import AgentSettings
from edgefleet.controller.store import Store
from tests.agent.conftest import SOUTHBOUND, agent_process, agent_settings, online, running_agent
from tests.conftest import eventually
from tests.southbound.conftest import Fleet, running_fleet


@pytest.fixture
async def fleet(store: Store) -> AsyncIterator[Fleet]:
    async with running_fleet(store, SOUTHBOUND) as running:
        yield running


def config_path(device: dict[str, Any]) -> str:
    return f"/api/v1/devices/{device['device_id']}/config"


async def synced(fleet: Fleet, device: dict[str, Any], version: int) -> dict[str, Any] | None:
    answer = (await fleet.api.get(config_path(device))).data
    return answer if answer["in_sync"] and answer["reported_version"] == version else None


def applying(seen: list[dict[str, Any]]) -> Any:
    def setup(agent: Agent) -> None:
        @agent.on_config
        async def apply(config: dict[str, Any]) -> None:
            if config.get("exposure", 0) > 100:
                raise ValueError("exposure out of range")
            seen.append(config)

    return setup


async def refused(fleet: Fleet, device: dict[str, Any]) -> dict[str, Any] | None:
    answer = (await fleet.api.get(config_path(device))).data
    return answer if answer["report_status"] == "fail" else None


@asynccontextmanager
async def synced_agent(
    fleet: Fleet, device: dict[str, Any], tmp_path: Path, seen: list[dict[str, Any]]
) -> AsyncIterator[AgentSettings]:
    """An agent whose first configuration, set while it was offline, is in sync."""
    await fleet.api.put(config_path(device), {"config": {"exposure": 30}})
    settings = agent_settings(fleet, device, tmp_path)
    async with running_agent(settings, applying(seen)):
        await eventually(lambda: synced(fleet, device, 1))
        yield settings


async def test_the_handler_applies_it_and_the_state_dir_keeps_it(
    fleet: Fleet, device: dict[str, Any], tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    async with synced_agent(fleet, device, tmp_path, seen) as settings:
        await fleet.api.patch(config_path(device), {"config": {"mode": "night"}})
        answer = await eventually(lambda: synced(fleet, device, 2))
    assert seen == [{"exposure": 30}, {"exposure": 30, "mode": "night"}]
    assert answer["reported"] == {"exposure": 30, "mode": "night"}
    saved = json.loads((Path(settings.state_dir) / "config.json").read_text())
    assert saved["version"] == 2 and saved["config"] == {"exposure": 30, "mode": "night"}
    assert (Path(settings.state_dir) / "config.json").stat().st_mode & 0o777 == 0o600

    # A new run reports what it runs at login, and is not made to apply it again.
    again: list[dict[str, Any]] = []
    async with running_agent(settings, applying(again)):
        await eventually(lambda: online(fleet, device))
        await eventually(lambda: synced(fleet, device, 2))
    assert again == []


async def test_a_refused_configuration_is_reported_and_resent_at_the_next_login(
    fleet: Fleet, device: dict[str, Any], tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    async with synced_agent(fleet, device, tmp_path, seen) as settings:
        await fleet.api.put(config_path(device), {"config": {"exposure": 500}})
        answer = await eventually(lambda: refused(fleet, device))
    assert answer["in_sync"] is False and "exposure out of range" in answer["reason"]
    assert answer["reported"] == {"exposure": 30} and answer["desired_version"] == 2

    fixed: list[dict[str, Any]] = []

    def lenient(agent: Agent) -> None:
        @agent.on_config
        def apply(config: dict[str, Any]) -> dict[str, Any]:
            fixed.append(config)
            return {**config, "clamped": True}

    async with running_agent(settings, lenient):
        answer = await eventually(lambda: synced_or_reported(fleet, device, 2))
    assert fixed == [{"exposure": 500}]
    assert answer["reported"] == {"exposure": 500, "clamped": True}


async def synced_or_reported(
    fleet: Fleet, device: dict[str, Any], version: int
) -> dict[str, Any] | None:
    """The device reported ``version`` as applied (what it runs may differ from
    what was sent: the handler said so)."""
    answer = (await fleet.api.get(config_path(device))).data
    ok = answer["report_status"] == "success" and answer["reported_version"] == version
    return answer if ok else None


async def test_the_cli_agent_hands_the_configuration_to_its_hook_on_stdin(
    fleet: Fleet, device: dict[str, Any], tmp_path: Path
) -> None:
    written = tmp_path / "applied.json"
    hook = tmp_path / "hook.py"
    hook.write_text(
        "import json, sys\n"
        "config = json.load(sys.stdin)\n"
        "if config.get('fail'):\n"
        "    sys.exit('the camera said no')\n"
        f"open({str(written)!r}, 'w').write(json.dumps(config))\n"
    )
    await fleet.api.put(config_path(device), {"config": {"fps": 15}})
    settings = agent_settings(fleet, device, tmp_path, config_hook=f"{sys.executable} {hook}")
    process = await agent_process(settings)
    try:
        await eventually(lambda: synced(fleet, device, 1))
        assert json.loads(written.read_text()) == {"fps": 15}
        await fleet.api.patch(config_path(device), {"config": {"fail": True}})
        answer = await eventually(lambda: refused(fleet, device))
        assert answer["report_message"] == "the camera said no"
        assert json.loads(written.read_text()) == {"fps": 15}
    finally:
        process.terminate()
        await process.wait()
