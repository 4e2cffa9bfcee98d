"""The agent over ``wss://``, end to end, with certificates made in the test."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from edgefleet.agent import protocol
from edgefleet.agent.settings import AgentSettings, SettingsError
from edgefleet.agent.tls import client_context
from edgefleet.controller.store import Store
from tests.agent.conftest import (
    SOUTHBOUND,
    agent_process,
    agent_settings,
    log_text,
    online,
    running_agent,
)
from tests.certificates import Certificates, make_certificates
from tests.conftest import eventually
from tests.southbound.conftest import Fleet, running_fleet


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "certs")


@pytest.fixture
async def tls_fleet(sqlite_store: Store, certificates: Certificates) -> AsyncIterator[Fleet]:
    """The real southbound, serving wss:// with a certificate of the test CA."""
    settings = replace(
        SOUTHBOUND,
        tls_cert_file=str(certificates.server_cert),
        tls_key_file=str(certificates.server_key),
    )
    async with running_fleet(sqlite_store, settings) as fleet:
        yield fleet


def wss_url(fleet: Fleet) -> str:
    return f"wss://127.0.0.1:{fleet.southbound.port}/ws"


async def test_the_agent_logs_in_over_wss_trusting_its_ca_file(
    tls_fleet: Fleet, certificates: Certificates, tmp_path: Path
) -> None:
    """``edgefleet-agent --ca-file`` as a process, against the real southbound."""
    device = await tls_fleet.register(name="camera-tls")
    settings = agent_settings(
        tls_fleet, device, tmp_path, server=wss_url(tls_fleet), ca_file=str(certificates.ca)
    )
    process = await agent_process(settings)
    try:
        await eventually(lambda: online(tls_fleet, device))
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0
    assert "logged in as device" in log_text(settings)


async def test_without_the_ca_the_server_certificate_is_refused(
    tls_fleet: Fleet, tmp_path: Path
) -> None:
    device = await tls_fleet.register(name="camera-tls")
    settings = agent_settings(tls_fleet, device, tmp_path, server=wss_url(tls_fleet), max_retries=0)
    async with running_agent(settings) as agent:
        await eventually(lambda: _true(agent.exit_code is not None))
    assert agent.exit_code == 1
    assert "CERTIFICATE_VERIFY_FAILED" in log_text(settings)
    assert await tls_fleet.state(device) == "offline"


async def _true(value: bool) -> bool:
    return value


class MutualTlsServer:
    """A small wss:// server that demands a client certificate of the test CA and
    answers a login, as a southbound behind mutual TLS would."""

    def __init__(self, certificates: Certificates) -> None:
        self.context = ssl.create_default_context(
            ssl.Purpose.CLIENT_AUTH, cafile=str(certificates.ca)
        )
        self.context.load_cert_chain(certificates.server_cert, certificates.server_key)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.clients: list[Any] = []

    async def handle(self, ws: ServerConnection) -> None:
        peer = ws.transport.get_extra_info("peercert")
        self.clients.append(dict(item[0] for item in peer["subject"]))
        login = protocol.parse_login(await ws.recv())
        await ws.send(protocol.login_success(login.device_id or "1"))
        async for message in ws:
            frame = protocol.parse_frame(message)
            if frame.type == protocol.PING_PONG:
                await ws.send(protocol.pong())
            elif frame.type == protocol.STATUS_UPLOAD:
                await ws.send(protocol.status_response())


def device_settings(tmp_path: Path, server: str, **tls: Any) -> AgentSettings:
    """An agent of no fleet (the server is the test's own), with ``tls`` files."""
    tmp_path.mkdir(exist_ok=True)
    password_file = tmp_path / "password"
    password_file.write_text("a-long-password")
    return AgentSettings(
        server=server,
        device_id="1790001234567890",
        password_file=str(password_file),
        state_dir=str(tmp_path / "state"),
        log_dir=str(tmp_path / "log"),
        reconnect_delay=0.2,
        **tls,
    )


async def test_the_agent_shows_its_client_certificate_when_asked(
    certificates: Certificates, tmp_path: Path
) -> None:
    server = MutualTlsServer(certificates)
    async with serve(server.handle, "127.0.0.1", 0, ssl=server.context) as listening:
        url = f"wss://localhost:{listening.sockets[0].getsockname()[1]}/ws"
        with_cert = device_settings(
            tmp_path / "with", url,
            ca_file=str(certificates.ca),
            client_cert_file=str(certificates.client_cert),
            client_key_file=str(certificates.client_key),
        )  # fmt: skip
        async with running_agent(with_cert):
            await eventually(lambda: _true("logged in as device" in _log(with_cert)))
        assert server.clients == [{"commonName": "device-1"}]

        without = device_settings(
            tmp_path / "without", url, ca_file=str(certificates.ca), max_retries=0
        )
        async with running_agent(without) as agent:
            await eventually(lambda: _true(agent.exit_code is not None))
        assert "logged in as device" not in _log(without)
        assert server.clients == [{"commonName": "device-1"}]  # the second never got in


def _log(settings: AgentSettings) -> str:
    path = Path(settings.log_dir) / "agent.log"
    return path.read_text() if path.exists() else ""


def test_tls_files_are_read_and_checked_in_one_place(
    certificates: Certificates, tmp_path: Path
) -> None:
    base = device_settings(tmp_path, "wss://127.0.0.1:1/ws")
    assert client_context(base) is not None  # the system's CAs
    assert client_context(replace(base, server="ws://127.0.0.1:1/ws")) is None
    with pytest.raises(SettingsError, match=r"^--ca-file /nowhere/ca\.pem: No such file"):
        client_context(replace(base, ca_file="/nowhere/ca.pem"))
    mismatched = replace(
        base,
        client_cert_file=str(certificates.client_cert),
        client_key_file=str(certificates.server_key),  # not its key
    )
    with pytest.raises(SettingsError, match=r"^--client-cert-file .* and --client-key-file "):
        client_context(mismatched)
    both = replace(
        base,
        ca_file=str(certificates.ca),
        client_cert_file=str(certificates.client_cert),
        client_key_file=str(certificates.client_key),
    )
    context = client_context(both)
    assert context is not None and context.verify_mode is ssl.CERT_REQUIRED
