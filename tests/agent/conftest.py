"""The agent against a real southbound and API on 127.0.0.1, with the protocol's
timings scaled down (a 5 s heartbeat takes 0.3 s), and a real SFTP server.

The heartbeat tolerances are not scaled with it (5 s, 3 s after a failure): the
agent runs in the server's process, so a stall of that process (a busy CI machine)
silences it too, and at 0.9 s a ~0.6 s stall turned the device unknown and a
command was refused. No agent test watches the server notice silence; one that
does gives itself short tolerances of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from edgefleet.agent.runner import Agent
from edgefleet.agent.settings import AgentSettings
from edgefleet.controller.settings import SouthboundSettings
from edgefleet.controller.store import Store
from tests.southbound.conftest import Fleet, running_fleet

SOUTHBOUND = SouthboundSettings(
    port=0,
    metrics_port=0,
    heartbeat_interval=0.3,
    status_interval=0.5,
    heartbeat_tolerance=5.0,
    heartbeat_tolerance_after_failure=3.0,
    login_timeout=1.0,
    command_timeout=3.0,
    instance="test-instance",
    token_key="test-key",
)
RAW_CLIENTS = dataclasses.replace(
    SOUTHBOUND, heartbeat_tolerance=30.0, heartbeat_tolerance_after_failure=30.0
)
"""For raw clients that send no heartbeats, in tests that do not watch silence: a
device stays online until it closes, however busy the machine."""
SFTP_USER, SFTP_PASSWORD = "uploader", "sftp-password-123"


@pytest.fixture
async def fleet(sqlite_store: Store) -> AsyncIterator[Fleet]:
    async with running_fleet(sqlite_store, SOUTHBOUND) as running:
        yield running


@pytest.fixture
async def device(fleet: Fleet) -> dict[str, Any]:
    return await fleet.register(name="camera-1")


def agent_settings(
    fleet: Fleet, device: dict[str, Any], tmp_path: Path, **overrides: Any
) -> AgentSettings:
    password_file = tmp_path / "password"
    password_file.write_text(device["password"] + "\n")
    fields: dict[str, Any] = {
        "server": fleet.ws_url,
        "device_id": device["device_id"],
        "password_file": str(password_file),
        "state_dir": str(tmp_path / "state"),
        "log_dir": str(tmp_path / "log"),
        "spool_dir": str(tmp_path / "spool"),
        "reconnect_delay": 0.2,
        "reconnect_max_delay": 0.5,
        "answer_timeout": 1.0,
        "restart_wait": 0.5,
    }
    return AgentSettings(**{**fields, **overrides})


def as_flags(settings: AgentSettings) -> list[str]:
    """The same settings as ``edgefleet-agent`` flags, for an agent in a child process."""
    flags = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if value is not None and value != f.default:
            flags += [f"--{f.name.replace('_', '-')}", str(value)]
    return flags


@asynccontextmanager
async def running_agent(
    settings: AgentSettings,
    setup: Callable[[Agent], None] | None = None,
    restart: Callable[[], None] = lambda: None,
) -> AsyncIterator[Agent]:
    """An agent in this event loop; ``agent.exit_code`` is set when it returns."""
    agent = Agent(settings, restart=restart, log_to_stderr=False)
    if setup:
        setup(agent)

    task = asyncio.create_task(agent.run_async())
    try:
        yield agent
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)


async def online(fleet: Fleet, device: dict[str, Any]) -> bool:
    return await fleet.state(device) == "online"


async def agent_process(settings: AgentSettings, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgefleet.agent.cli",
        *as_flags(settings),
        *extra,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def saved_state(settings: AgentSettings) -> dict[str, Any]:
    return json.loads((Path(settings.state_dir) / "state.json").read_text())


def log_text(settings: AgentSettings) -> str:
    return (Path(settings.log_dir) / "agent.log").read_text()


@dataclasses.dataclass
class SftpServer:
    port: int
    root: Path
    known_hosts: Path


class _PasswordOnly(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return (username, password) == (SFTP_USER, SFTP_PASSWORD)


@pytest.fixture
async def sftp_server(tmp_path: Path) -> AsyncIterator[SftpServer]:
    """A real SFTP server (asyncssh) rooted in a temporary directory."""
    root = tmp_path / "sftp-root"
    root.mkdir()
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        server_factory=_PasswordOnly,
        sftp_factory=lambda channel: asyncssh.SFTPServer(channel, chroot=str(root)),
    )
    port = server.sockets[0].getsockname()[1]
    known_hosts = tmp_path / "known_hosts"
    public = host_key.export_public_key("openssh").decode().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{port} {' '.join(public)}\n")
    try:
        yield SftpServer(port, root, known_hosts)
    finally:
        server.close()
        await server.wait_closed()
