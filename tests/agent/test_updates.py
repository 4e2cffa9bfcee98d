"""Software updates end to end (docs/protocol.md section 9): an operator uploads an
artifact, sends ``update`` to one device, and the real agent downloads it over the
device port, checks it, runs the installer and reports the version it now runs."""

from __future__ import annotations

import hashlib
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent.runner import Agent
from edgefleet.controller.store import Store
from edgefleet.controller.store.blobs import LocalFileStore
from tests.agent.conftest import SOUTHBOUND, agent_settings, online, running_agent
from tests.conftest import eventually
from tests.southbound.conftest import Fleet, running_fleet
from tests.tcp_proxy import TcpProxy

PACKAGE = bytes(range(256)) * 4096  # 1 MiB
INSTALLER = """
import os, shutil, sys
log = os.path.join(os.path.dirname(sys.argv[0]), "installs.log")
with open(log, "a") as out:
    out.write(os.environ["EDGEFLEET_ARTIFACT_VERSION"] + "\\n")
if os.environ["EDGEFLEET_ARTIFACT_VERSION"] == "crash":
    os.kill(os.getpid(), 9)
shutil.copy(sys.argv[1], os.path.join(os.path.dirname(sys.argv[0]), "installed.bin"))
"""


@pytest.fixture
async def files(tmp_path: Path) -> LocalFileStore:
    return LocalFileStore(tmp_path / "cloud-files")


@pytest.fixture
async def fleet(store: Store, files: LocalFileStore) -> AsyncIterator[Fleet]:
    """On SQLite and MariaDB, with a file store this test can reach into."""
    async with running_fleet(store, SOUTHBOUND, files=files) as running:
        yield running


@pytest.fixture
def installer(tmp_path: Path) -> str:
    """An installer command: copies the file next to itself and logs each run."""
    folder = tmp_path / "device"
    folder.mkdir()
    script = folder / "install.py"
    script.write_text(INSTALLER)
    return f"{sys.executable} {script}"


def installs(installer: str) -> list[str]:
    log = Path(installer.split()[-1]).parent / "installs.log"
    return log.read_text().split() if log.exists() else []


def installed(installer: str) -> bytes:
    return (Path(installer.split()[-1]).parent / "installed.bin").read_bytes()


async def upload(fleet: Fleet, version: str, body: bytes = PACKAGE) -> dict:
    return await fleet.api.upload_artifact("detector", version, body)


async def update(fleet: Fleet, device: dict[str, Any], artifact: dict) -> Any:
    return await fleet.api.post(
        f"/api/v1/devices/{device['device_id']}/commands",
        {"order": "update", "params": {"artifact_id": artifact["artifact_id"]}, "timeout": 30},
    )


async def business_version(fleet: Fleet, device: dict[str, Any]) -> str | None:
    await fleet.settled()
    answer = await fleet.api.get(f"/api/v1/devices/{device['device_id']}")
    return answer.data["business_version"]


async def test_an_update_is_downloaded_installed_and_becomes_the_business_version(
    fleet: Fleet, tmp_path: Path, installer: str
) -> None:
    device = await fleet.register(name="camera-1")
    artifact = await upload(fleet, "2.1.0")
    settings = agent_settings(fleet, device, tmp_path, installer=installer)
    async with running_agent(settings):
        await eventually(lambda: online(fleet, device))
        answer = await update(fleet, device, artifact)
        assert answer.data["status"] == "success", answer.body
        assert answer.data["data"] == {"version": "2.1.0"}
        assert await business_version(fleet, device) == "2.1.0"
    assert installed(installer) == PACKAGE and installs(installer) == ["2.1.0"]
    assert list((Path(settings.state_dir) / "updates").iterdir()) == []  # nothing left behind
    events = [e["event"] for e in await fleet.events(device)]
    assert "software_updated" in events


async def test_a_download_cut_in_the_middle_resumes_with_range_and_installs_once(
    fleet: Fleet, tmp_path: Path, installer: str
) -> None:
    device = await fleet.register(name="camera-2")
    artifact = await upload(fleet, "2.2.0")
    relay = TcpProxy("127.0.0.1", fleet.southbound.port)
    await relay.start()
    try:
        relay.cut_next(b"GET /files/", 300_000)  # about a third of the package
        settings = agent_settings(
            fleet, device, tmp_path, installer=installer, server=f"ws://127.0.0.1:{relay.port}/ws"
        )
        async with running_agent(settings):
            await eventually(lambda: online(fleet, device))
            answer = await update(fleet, device, artifact)
            assert answer.data["status"] == "success", answer.body
    finally:
        await relay.stop()
    downloads = [r for r in relay.requests if r.startswith(b"GET /files/")]
    assert len(downloads) == 2
    assert b"range: bytes=" not in downloads[0].lower()
    resumed_at = int(downloads[1].lower().split(b"range: bytes=")[1].split(b"-")[0])
    assert 0 < resumed_at < len(PACKAGE)
    assert installs(installer) == ["2.2.0"] and installed(installer) == PACKAGE
    assert await business_version(fleet, device) == "2.2.0"


async def test_a_corrupted_artifact_is_refused_and_never_installed(
    fleet: Fleet, files: LocalFileStore, tmp_path: Path, installer: str
) -> None:
    device = await fleet.register(name="camera-3")
    artifact = await upload(fleet, "9.9.9")
    stored = files.path(artifact["sha256"])
    stored.write_bytes(b"\x00" * len(PACKAGE))  # rotted on disk: same size, other bytes
    settings = agent_settings(fleet, device, tmp_path, installer=installer)
    async with running_agent(settings):
        await eventually(lambda: online(fleet, device))
        answer = await update(fleet, device, artifact)
    result = answer.data
    assert result["status"] == "fail"
    assert result["message"].startswith("artifact refused")
    assert artifact["sha256"] in result["message"]
    assert installs(installer) == []
    assert await business_version(fleet, device) is None


async def test_a_failed_or_interrupted_install_reports_fail_with_the_reason(
    fleet: Fleet, tmp_path: Path, installer: str
) -> None:
    device = await fleet.register(name="camera-4")
    crashing = await upload(fleet, "crash", b"build that takes the installer down")
    settings = agent_settings(fleet, device, tmp_path, installer=installer)
    async with running_agent(settings):
        await eventually(lambda: online(fleet, device))
        answer = await update(fleet, device, crashing)
    assert answer.data["status"] == "fail"
    assert answer.data["message"] == "install interrupted: the installer was killed by signal 9"
    assert installs(installer) == ["crash"]
    assert await business_version(fleet, device) is None


async def test_the_python_updater_gets_the_checked_file_and_says_the_version(
    fleet: Fleet, tmp_path: Path
) -> None:
    device = await fleet.register(name="camera-5")
    good = await upload(fleet, "3.0.0")
    bad = await upload(fleet, "3.0.1", b"a build the device maker refuses")
    received: list[tuple[bytes, str]] = []

    def setup(agent: Agent) -> None:
        @agent.updater
        def install(path: Path, artifact: dict[str, Any]) -> str:
            data = path.read_bytes()
            received.append((data, artifact["version"]))
            if hashlib.sha256(data).hexdigest() != artifact["sha256"]:
                raise AssertionError("the agent handed over an unchecked file")
            if artifact["version"] == "3.0.1":
                raise RuntimeError("partition B is read-only")
            return "3.0.0+build7"

    with tempfile.TemporaryDirectory() as scratch:
        settings = agent_settings(fleet, device, Path(scratch))
        async with running_agent(settings, setup):
            await eventually(lambda: online(fleet, device))
            refused = await update(fleet, device, bad)
            accepted = await update(fleet, device, good)
    assert refused.data["status"] == "fail"
    assert refused.data["message"] == "install failed: partition B is read-only"
    assert accepted.data["status"] == "success", accepted.body
    assert accepted.data["data"] == {"version": "3.0.0+build7"}
    assert [version for _, version in received] == ["3.0.1", "3.0.0"]
    assert received[1][0] == PACKAGE
    assert await business_version(fleet, device) == "3.0.0+build7"


async def test_an_agent_without_an_installer_does_not_take_updates(
    fleet: Fleet, tmp_path: Path
) -> None:
    device = await fleet.register(name="camera-6")
    artifact = await upload(fleet, "1.0")
    async with running_agent(agent_settings(fleet, device, tmp_path)):
        await eventually(lambda: online(fleet, device))
        answer = await update(fleet, device, artifact)
    message = answer.failure(409, "DEVICE_UNSUPPORTED")
    assert message == "Device does not support updates!"
