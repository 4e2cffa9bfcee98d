"""The agent against the real southbound on 127.0.0.1, in this process."""

from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent import protocol
from edgefleet.agent.runner import Agent
from edgefleet.agent.settings import AgentSettings
from edgefleet.agent.state import SavedState, StateFile
from tests.agent.conftest import (
    SFTP_PASSWORD,
    SFTP_USER,
    SOUTHBOUND,
    SftpServer,
    agent_settings,
    log_text,
    online,
    running_agent,
    saved_state,
)
from tests.conftest import eventually
from tests.southbound.conftest import Fleet, running_fleet


def with_commands(agent: Agent) -> None:
    @agent.command("set_exposure")
    async def set_exposure(value: int, mode: str = "auto") -> dict:
        return {"exposure": value, "mode": mode}

    @agent.command("blocking_probe")
    def blocking_probe() -> str:
        return "probed"

    @agent.command("explode")
    def explode() -> None:
        raise RuntimeError("sensor not responding")

    @agent.status
    def extra() -> dict:
        return {"temperature_c": 41.5}


async def command(fleet: Fleet, device: dict, order: str, **params: Any) -> Any:
    path = f"/api/v1/devices/{device['device_id']}/commands"
    return await fleet.api.post(path, {"order": order, "params": params})


async def test_comes_online_and_its_status_is_served(fleet: Fleet, device, tmp_path) -> None:
    settings = agent_settings(fleet, device, tmp_path)
    async with running_agent(settings, with_commands):
        await eventually(lambda: online(fleet, device))

        async def status() -> Any:
            answer = await fleet.api.get(f"/api/v1/devices/{device['device_id']}/status")
            return answer.data if answer.data.get("cpu_percent") is not None else None

        live = await eventually(status)
    latest = live["latest"]
    assert set(latest) >= {"CPU_info", "Memory_info", "Disk_info", "dev_state", "extra"}
    assert latest["extra"] == {
        "temperature_c": 41.5,
        "queue": {"depth": 0, "bytes": 0, "dropped": 0},
    }
    assert 0 <= live["memory_used_percent"] <= 100 and 0 <= live["disk_used_percent"] <= 100


async def test_custom_commands_failures_and_unknown_names(fleet: Fleet, device, tmp_path) -> None:
    async with running_agent(agent_settings(fleet, device, tmp_path), with_commands):
        await eventually(lambda: online(fleet, device))
        answer = await command(fleet, device, "set_exposure", value=3, mode="night")
        assert answer.data["status"] == "success"
        assert answer.data["message"] == protocol.MSG_ORDER_DONE
        assert answer.data["data"] == {"exposure": 3, "mode": "night"}
        assert (await command(fleet, device, "blocking_probe")).data["data"] == "probed"

        failed = (await command(fleet, device, "explode")).data
        assert (failed["status"], failed["message"]) == ("fail", "sensor not responding")
        unknown = (await command(fleet, device, "format_disk")).data
        assert (unknown["status"], unknown["message"]) == ("fail", protocol.UNKNOWN_ORDER_MESSAGE)
        wrong = (await command(fleet, device, "set_exposure", brightness=1)).data
        assert wrong["status"] == "fail" and wrong["message"].startswith("bad params")

        assert await online(fleet, device)  # none of it disturbed the session
    log = log_text(agent_settings(fleet, device, tmp_path))
    assert "command explode: fail, sensor not responding" in log


async def test_restart_is_confirmed_then_restarts(fleet: Fleet, device, tmp_path) -> None:
    restarts: list[bool] = []
    settings = agent_settings(fleet, device, tmp_path)
    async with running_agent(settings, restart=lambda: restarts.append(True)) as agent:
        await eventually(lambda: online(fleet, device))
        answer = await command(fleet, device, "restart")
        assert (answer.data["status"], answer.data["message"]) == ("success", "restart confirmed")
        await eventually(lambda: _true(agent.exit_code is not None))
    assert agent.exit_code == 0 and restarts == [True]


async def _true(value: bool) -> bool:
    return value


def uploading_settings(
    fleet: Fleet, device, tmp_path: Path, sftp_server: SftpServer, known_hosts: Path
) -> AgentSettings:
    password_file = tmp_path / "sftp-password"
    password_file.write_text(SFTP_PASSWORD)
    return agent_settings(
        fleet,
        device,
        tmp_path,
        sftp_host="127.0.0.1",
        sftp_port=sftp_server.port,
        sftp_user=SFTP_USER,
        sftp_password_file=str(password_file),
        sftp_known_hosts=str(known_hosts),
    )


async def test_upload_log_lands_on_the_sftp_server(
    fleet: Fleet, device, tmp_path, sftp_server: SftpServer
) -> None:
    settings = uploading_settings(fleet, device, tmp_path, sftp_server, sftp_server.known_hosts)
    async with running_agent(settings):
        await eventually(lambda: online(fleet, device))
        answer = await command(fleet, device, "upload_log", remote_dir="/logs/cameras")
        assert answer.data["status"] == "success", answer.data
    uploaded = sftp_server.root / "logs" / "cameras" / f"{device['device_id']}.log"
    text = uploaded.read_text()
    assert f"logged in as device {device['device_id']}" in text
    assert "command upload_log received" in text


async def test_upload_log_refuses_an_unknown_host_key(
    fleet: Fleet, device, tmp_path, sftp_server: SftpServer
) -> None:
    wrong_hosts = tmp_path / "other_known_hosts"
    wrong_hosts.write_text(
        f"[127.0.0.1]:{sftp_server.port} ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIAv4mYv1c1S8cTGkyyvjXWQmJ3fKZ0W5yR0qW2G2xm1G\n"
    )
    settings = uploading_settings(fleet, device, tmp_path, sftp_server, wrong_hosts)
    async with running_agent(settings):
        await eventually(lambda: online(fleet, device))
        answer = await command(fleet, device, "upload_log")
        assert (answer.data["status"], answer.data["message"]) == ("fail", "fail to upload log.")
    assert not any(sftp_server.root.rglob("*.log"))
    assert "upload_log to 127.0.0.1 failed" in log_text(settings)


async def test_token_is_saved_private_and_never_logged(fleet: Fleet, device, tmp_path) -> None:
    settings = agent_settings(fleet, device, tmp_path)
    async with running_agent(settings):
        await eventually(lambda: online(fleet, device))
        await eventually(lambda: _true((Path(settings.state_dir) / "state.json").exists()))
    state_file = Path(settings.state_dir) / "state.json"
    assert stat.S_IMODE(os.stat(state_file).st_mode) == 0o600
    token = saved_state(settings)["token"]
    assert token and saved_state(settings)["device_id"] == device["device_id"]
    log = log_text(settings)
    assert token not in log and device["password"] not in log
    assert "logging in with password" in log


async def test_a_refused_token_falls_back_to_the_password(fleet: Fleet, device, tmp_path) -> None:
    settings = agent_settings(fleet, device, tmp_path)
    forged = SavedState(device["device_id"], "forged.token.value", "2099-01-01T00:00:00Z")
    await StateFile(Path(settings.state_dir)).save(forged)
    async with running_agent(settings):
        await eventually(lambda: online(fleet, device))
    assert saved_state(settings)["token"] not in (None, forged.token)
    log = log_text(settings)
    assert f"login refused: {protocol.MSG_BAD_TOKEN}" in log
    assert log.index("logging in with token") < log.index("logging in with password")
    assert "forged.token.value" not in log
    events = [(e["event"], e["detail"].get("by")) for e in await fleet.events(device)]
    assert events[1:3] == [("login_failed", None), ("connected", "password")]  # after "registered"


async def test_reconnects_with_its_token_after_the_server_restarts(
    sqlite_store, tmp_path: Path
) -> None:
    async with running_fleet(sqlite_store, SOUTHBOUND) as first:
        device = await first.register(name="gateway-7")
        port = first.southbound.port
        settings = agent_settings(first, device, tmp_path)
        async with running_agent(settings) as agent:
            await eventually(lambda: online(first, device))
            await first.southbound.stop()
            await first.settled()
            async with running_fleet(sqlite_store, replace(SOUTHBOUND, port=port)) as second:
                await eventually(lambda: online(second, device))
                assert agent.exit_code is None
                events = await second.events(device)
    log = log_text(settings)
    assert log.count("logged in as device") == 2
    assert "connected, logging in with token" in log
    # The server's side: the second session began with the token, none was refused
    # (a refused token followed by the password would log in twice as well).
    assert [e["detail"]["by"] for e in events if e["event"] == "connected"] == [
        "password", "token"
    ]  # fmt: skip
    assert not [e for e in events if e["event"] == "login_failed"]


@pytest.mark.parametrize("max_retries", [0, 1, 2])
async def test_max_retries_is_the_number_of_retries_after_a_failed_attempt(
    fleet: Fleet, device, tmp_path, max_retries: int
) -> None:
    settings = agent_settings(
        fleet, device, tmp_path, server="ws://127.0.0.1:9/ws", max_retries=max_retries
    )
    async with running_agent(settings) as agent:
        await eventually(lambda: _true(agent.exit_code is not None))
    assert agent.exit_code == 1
    assert log_text(settings).count("cannot reach") == max_retries + 1  # attempts in all


async def test_a_refused_token_uses_no_retry(fleet: Fleet, device, tmp_path) -> None:
    """The saved token refused, the agent goes straight back with the password; only
    failures after that count against ``max_retries``."""
    (tmp_path / "wrong-password").write_text("not-the-password-at-all")
    settings = agent_settings(
        fleet, device, tmp_path, max_retries=1, password_file=str(tmp_path / "wrong-password")
    )
    forged = SavedState(device["device_id"], "forged.token.value", "2099-01-01T00:00:00Z")
    await StateFile(Path(settings.state_dir)).save(forged)
    async with running_agent(settings) as agent:
        await eventually(lambda: _true(agent.exit_code is not None))
    assert agent.exit_code == 1
    log = log_text(settings)
    assert log.count("logging in with token") == 1
    assert log.count("logging in with password") == 2  # the attempt, then one retry


async def test_a_stop_before_the_agent_runs_is_not_lost(fleet: Fleet, device, tmp_path) -> None:
    async with running_agent(agent_settings(fleet, device, tmp_path)) as agent:
        agent.stop()  # a signal in the first instant, before run_async has begun
        await eventually(lambda: _true(agent.exit_code is not None), timeout=5)
    assert agent.exit_code == 0


async def test_from_env_reads_the_variables_and_the_config_file_like_the_cli(
    fleet: Fleet, device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's embedded agent: ``Agent.from_env()``, a command, a status hook."""
    cli = agent_settings(fleet, device, tmp_path)
    (tmp_path / "agent.toml").write_text(f'state_dir = "{cli.state_dir}"\nanswer_timeout = 1.5\n')
    for name, value in {
        "SERVER": cli.server, "DEVICE_ID": cli.device_id, "PASSWORD_FILE": cli.password_file,
        "LOG_DIR": cli.log_dir, "RECONNECT_DELAY": "0.2", "CONFIG": str(tmp_path / "agent.toml"),
    }.items():  # fmt: skip
        monkeypatch.setenv(f"EDGEFLEET_AGENT_{name}", str(value))
    agent = Agent.from_env()
    assert (agent.settings.server, agent.settings.device_id) == (cli.server, cli.device_id)
    assert (agent.settings.state_dir, agent.settings.answer_timeout) == (cli.state_dir, 1.5)
    assert agent.settings.reconnect_delay == 0.2
    with_commands(agent)
    running = asyncio.create_task(agent.run_async())
    try:
        await eventually(lambda: online(fleet, device))
        answer = await command(fleet, device, "set_exposure", value=3)
        assert answer.data["data"] == {"exposure": 3, "mode": "auto"}
    finally:
        agent.stop()
        await asyncio.wait_for(running, 10)
    assert agent.exit_code == 0
