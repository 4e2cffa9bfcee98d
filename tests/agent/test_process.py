"""``edgefleet-agent`` as a real child process: restart re-execs it, SIGTERM ends it."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.agent.conftest import (
    agent_process,
    agent_settings,
    log_text,
    online,
)
from tests.conftest import eventually
from tests.server_process import FAST_PROTOCOL, agent_cli, call, edgefleet_serve, wait_for
from tests.southbound.conftest import Fleet


async def test_restart_re_execs_and_logs_in_again_with_its_token(
    fleet: Fleet, device, tmp_path
) -> None:
    settings = agent_settings(fleet, device, tmp_path)
    process = await agent_process(settings)
    try:
        await eventually(lambda: online(fleet, device))
        path = f"/api/v1/devices/{device['device_id']}/commands"
        answer = await fleet.api.post(path, {"order": "restart"})
        assert answer.data["status"] == "success"

        async def logged_in_twice() -> bool:
            return log_text(settings).count("logged in as device") == 2

        await eventually(logged_in_twice)
        log = log_text(settings)
        after_restart = log[log.index("restarting") :]
        assert "agent started" in after_restart
        assert "connected, logging in with token" in after_restart
        assert process.returncode is None  # the same process, re-executed in place
        await eventually(lambda: online(fleet, device))
        # The server's side: after the restart the token let it in, nothing refused.
        events = await fleet.events(device)
        assert [e["detail"]["by"] for e in events if e["event"] == "connected"] == [
            "password", "token"
        ]  # fmt: skip
        assert not [e for e in events if e["event"] == "login_failed"]
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_closes_cleanly_and_the_device_goes_offline(
    fleet: Fleet, device, tmp_path, signum: int
) -> None:
    """A pod stopping (SIGTERM) or a person at the terminal (Ctrl+C, SIGINT): exit 0."""
    settings = agent_settings(fleet, device, tmp_path)
    process = await agent_process(settings)
    await eventually(lambda: online(fleet, device))
    process.send_signal(signum)
    assert await asyncio.wait_for(process.wait(), 10) == 0

    async def offline() -> bool:
        return await fleet.state(device) == "offline"

    await eventually(offline)
    offline_events = [e for e in await fleet.events(device) if e["event"] == "offline"]
    assert offline_events[-1]["detail"]["reason"] == "closed_by_device"
    assert "agent stopped" in log_text(settings)


def test_the_cli_against_edgefleet_serve(tmp_path: Path) -> None:
    """Both programs as a user runs them: ``edgefleet serve`` and ``edgefleet-agent
    --commands``, talking over 127.0.0.1, driven through the REST API."""
    (tmp_path / "camera_commands.py").write_text(
        "from edgefleet.agent import command\n\n"
        "@command('set_exposure')\n"
        "def set_exposure(value: int) -> dict:\n"
        "    return {'exposure': value}\n"
    )
    with edgefleet_serve(tmp_path, *FAST_PROTOCOL, env={"EDGEFLEET_API_TOKEN": "t"}) as server:
        device = call(server.base_url, "POST", "/devices",
                      {"name": "cam", "hardware_sn": "SN1", "hardware_model": "M1"})  # fmt: skip
        agent = agent_cli(server, device, tmp_path, "--commands", "camera_commands")
        try:
            path = f"/devices/{device['device_id']}"
            wait_for(lambda: call(server.base_url, "GET", path + "/status").get("cpu_percent"))
            result = call(server.base_url, "POST", path + "/commands",
                          {"order": "set_exposure", "params": {"value": 7}})  # fmt: skip
            assert (result["status"], result["data"]) == ("success", {"exposure": 7})
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(10) == 0
            wait_for(lambda: call(server.base_url, "GET", path)["state"] == "offline")
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
