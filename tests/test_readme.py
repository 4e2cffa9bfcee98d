"""The README's examples run as written, against a real ``edgefleet serve``."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

from tests.readme import section
from tests.server_process import call, edgefleet_serve, wait_for

ROOT = Path(__file__).parents[1]


def code_block(heading: str, language: str) -> str:
    """The first ``language`` code block under the heading ``heading``."""
    match = re.search(rf"^```{language}\n(.*?)^```$", section(heading), re.S | re.M)
    assert match, f"no {language} block in {heading}"
    return match[1]


def test_the_device_example_logs_in_and_gets_a_pong(tmp_path: Path) -> None:
    """The shell block of "Devices (southbound)", with the placeholders the README
    says to replace replaced: the registered device's id and password, and the
    URL's port (this server's, not 9090)."""
    script = code_block("Devices (southbound)", "sh")
    with edgefleet_serve(tmp_path, env={"EDGEFLEET_API_TOKEN": "t"}) as server:
        device = call(server.base_url, "POST", "/devices",
                      {"name": "cam", "hardware_sn": "SN1", "hardware_model": "M1"})  # fmt: skip
        filled = (
            script.replace("<device_id>", device["device_id"])
            .replace("<password>", device["password"])
            .replace("ws://127.0.0.1:9090/ws", f"ws://127.0.0.1:{server.ws_port}/ws")
        )
        venv = ROOT / ".venv"
        if Path(sys.prefix) != venv:  # the tests run from another environment than make's
            filled = filled.replace(".venv/bin/python", sys.executable)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", filled],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    login, pong = (json.loads(line) for line in result.stdout.splitlines())
    assert login["status"] == "success"
    assert login["data"]["device_id"] == device["device_id"]
    assert pong == {"type": "ping_pong", "Headers": {}, "data": "pong"}


def test_the_data_example_publishes_a_snapshot_that_reaches_the_api(tmp_path: Path) -> None:
    """The Python block of "Data from devices" as a device maker saves it, run as a
    program against ``edgefleet serve``: a command publishes a record with an image,
    which arrives over the data extension with its file; the configuration set
    before the device came online is applied by its handler."""
    (tmp_path / "camera_agent.py").write_text(code_block("Data from devices", "python"))
    image = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 64
    (tmp_path / "snapshot.jpg").write_bytes(image)
    # Frequent heartbeats, but 30 s of silence tolerated: a moment's stall of either
    # process on a busy machine must not make the device "unknown" and its command
    # refused.
    fast = ["--heartbeat-interval", "0.5", "--heartbeat-tolerance", "30",
            "--heartbeat-tolerance-after-failure", "30",
            "--files-dir", str(tmp_path / "files")]  # fmt: skip
    with edgefleet_serve(tmp_path, *fast, env={"EDGEFLEET_API_TOKEN": "t"}) as server:
        device = call(server.base_url, "POST", "/devices",
                      {"name": "cam", "hardware_sn": "SN1", "hardware_model": "M1"})  # fmt: skip
        (tmp_path / "password").write_text(device["password"])
        config_path = f"/devices/{device['device_id']}/config"
        call(server.base_url, "PUT", config_path, {"config": {"exposure": 30}})
        agent = subprocess.Popen(
            [sys.executable, "camera_agent.py",
             "--server", f"ws://127.0.0.1:{server.ws_port}/ws",
             "--device-id", device["device_id"], "--password-file", str(tmp_path / "password"),
             "--state-dir", str(tmp_path / "state"), "--log-dir", str(tmp_path / "log"),
             "--spool-dir", ""],
            cwd=tmp_path, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            path = f"/devices/{device['device_id']}"
            wait_for(lambda: call(server.base_url, "GET", path)["state"] == "online")
            result = call(server.base_url, "POST", path + "/commands",
                          {"order": "snapshot", "params": {"lane": 2}})  # fmt: skip
            assert result["status"] == "success", result
            record_id = result["data"]["record_id"]

            def arrived() -> list:
                return call(server.base_url, "GET", "/records?kind=alert")["items"]

            wait_for(arrived)
            [record] = arrived()
            assert record["record_id"] == record_id
            assert record["payload"] == {"lane": 2, "vehicle": "truck"}

            def detail() -> dict:
                return call(server.base_url, "GET", f"/records/{record['id']}")

            wait_for(lambda: detail()["files"][0]["present"])
            assert detail()["files"][0]["sha256"] == hashlib.sha256(image).hexdigest()
            wait_for(lambda: call(server.base_url, "GET", config_path)["in_sync"])
            assert json.loads((tmp_path / "camera.json").read_text()) == {"exposure": 30}
        finally:
            agent.terminate()
            agent.wait(10)
