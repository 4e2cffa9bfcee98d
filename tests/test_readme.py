"""The README's examples run as written, against a real ``edgefleet serve``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.server_process import call, edgefleet_serve

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"


def code_block(section: str, language: str) -> str:
    """The first ``language`` code block under the heading ``section``."""
    text = README.read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    match = re.search(rf"^```{language}\n(.*?)^```$", text[start:end], re.S | re.M)
    assert match, f"no {language} block in {section}"
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
