"""A real agent is reached by a group command because its labels match the
group's selector, and no longer once they stop matching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgefleet.agent import protocol
from edgefleet.agent.runner import Agent
from tests.agent.conftest import agent_settings, online, running_agent
from tests.conftest import eventually
from tests.southbound.conftest import Fleet


def with_snapshot(agent: Agent) -> None:
    @agent.command("snapshot")
    async def snapshot(quality: int) -> dict:
        return {"quality": quality}


async def test_a_group_command_reaches_an_agent_its_selector_matches(
    fleet: Fleet, device: dict[str, Any], tmp_path: Path
) -> None:
    path = f"/api/v1/devices/{device['device_id']}"
    assert (await fleet.api.patch(path, {"labels": {"site": "chengdu"}})).status == 200
    group = await fleet.api.create_group("chengdu", selector="site=chengdu")
    command = {"order": "snapshot", "params": {"quality": 80}, "timeout": 3}
    async with running_agent(agent_settings(fleet, device, tmp_path), with_snapshot):
        await eventually(lambda: online(fleet, device))
        answer = await fleet.api.post(f"/api/v1/groups/{group['group_id']}/commands", command)
        [result] = answer.data["results"]
        assert result.pop("command_id")  # every command is in the history
        assert result == {"device_id": device["device_id"], "status": "success",
                          "message": protocol.MSG_ORDER_DONE, "data": {"quality": 80}}  # fmt: skip
        await fleet.api.patch(path, {"labels": {"site": "beijing"}})
        answer = await fleet.api.post(f"/api/v1/groups/{group['group_id']}/commands", command)
        assert answer.data["results"] == []
