"""``edgefleet serve`` as a user runs it: starts, answers, stops cleanly on a signal."""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from pathlib import Path

import pytest

from tests.server_process import edgefleet_serve


def get(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_generates_a_token_once_and_stops_cleanly(tmp_path: Path, signum: int) -> None:
    with edgefleet_serve(tmp_path, env={"EDGEFLEET_API_TOKEN": ""}) as server:
        token = re.search(r"Bearer (\S+)", server.stderr()).group(1)  # type: ignore[union-attr]
        assert get(server.base_url + "/api/v1/devices", token)["data"]["total"] == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{server.ws_port}/healthz") as response:
            assert response.read() == b"ok\n"  # the southbound runs in the same process
        assert server.stop(signum) == 0
    log = server.stderr()
    assert log.count(token) == 1  # printed once, never logged
    events = [json.loads(line)["msg"] for line in log.splitlines() if line.startswith("{")]
    assert "shutting down" in events[events.index("northbound API listening") :]


def test_serve_takes_settings_from_the_environment(tmp_path: Path) -> None:
    env = {"EDGEFLEET_API_TOKEN": "from-env", "EDGEFLEET_LOG_FORMAT": "text"}
    with edgefleet_serve(tmp_path, env=env) as server:
        assert get(server.base_url + "/api/v1/stats", "from-env")["status"] == "success"
        assert "Bearer" not in server.stderr()
        assert server.stop() == 0
    assert 'msg="northbound API listening"' in server.stderr()
