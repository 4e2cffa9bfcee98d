"""``edgefleet serve`` as a real child process, for tests of the whole program, and
the console scripts as a user types them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    base_url: str
    stderr_path: Path
    ws_port: int

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout)


def wait_until_healthy(base_url: str, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"edgefleet exited early with {process.returncode}")
        try:
            with urllib.request.urlopen(base_url + "/api/v1/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("edgefleet did not become healthy in time")


@contextmanager
def edgefleet_serve(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    port, ws_port = free_port(), free_port()
    stderr_path = tmp_path / "serve.stderr"
    command = [
        sys.executable,
        "-m",
        "edgefleet.controller.cli",
        "serve",
        "--api-port",
        str(port),
        "--ws-port",
        str(ws_port),
        "--metrics-port",
        str(free_port()),
        "--db-url",
        f"sqlite+aiosqlite:///{tmp_path}/edgefleet.db",
        "--files-dir",
        str(tmp_path / "files"),
        "--bcrypt-rounds",
        "4",
        *args,
    ]
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            command, stderr=stderr, text=True, env={**os.environ, **(env or {})}
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", stderr_path, ws_port)
    try:
        wait_until_healthy(server.base_url, process)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def call(base_url: str, method: str, path: str, body: Any = None, token: str = "t") -> Any:
    """A REST call to ``/api/v1`` + ``path``: its ``data``, or ``{"error": status}``."""
    request = urllib.request.Request(
        f"{base_url}/api/v1{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.load(response)["data"]
    except urllib.error.HTTPError as exc:
        return {"error": exc.code}


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


FAST_PROTOCOL = ["--heartbeat-interval", "0.3", "--status-interval", "0.5", "--heartbeat-tolerance",
                 "30", "--heartbeat-tolerance-after-failure", "30"]  # fmt: skip
"""``edgefleet serve`` flags that scale the device protocol's pace down: heartbeats and
status uploads come often, but the server tolerates 30 s of silence, so an agent in
another process that a busy machine stalls for a moment is not taken for gone (its
device "unknown", a command refused). A device goes offline here because its
connection closed; a test of the server noticing silence gives its own tolerances."""


def agent_cli(
    server: ServerProcess, device: dict[str, Any], folder: Path, *extra: str
) -> subprocess.Popen[bytes]:
    """``edgefleet-agent`` for ``device`` (as registered: with its password) against
    ``server``, keeping its files in ``folder`` and run from it (``--commands``
    modules are imported from there). A ping or status upload waits 5 s for its
    answer: a late pong on a busy machine is not a missed one."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "password").write_text(device["password"])
    return subprocess.Popen(
        [sys.executable, "-m", "edgefleet.agent.cli",
         "--server", f"ws://127.0.0.1:{server.ws_port}/ws",
         "--device-id", device["device_id"], "--password-file", str(folder / "password"),
         "--state-dir", str(folder / "state"), "--log-dir", str(folder / "log"),
         "--answer-timeout", "5", *extra],
        cwd=folder, stderr=subprocess.DEVNULL,
    )  # fmt: skip


BIN = Path(sys.executable).parent


def console_script(
    program: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    stdin: str = "",
) -> subprocess.CompletedProcess[str]:
    """``edgefleet`` or ``edgefleet-agent`` as installed, run to its end with
    ``stdin``; no ``EDGEFLEET_*`` variable of the caller's leaks in, ``env`` adds
    its own."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    return subprocess.run(
        [str(BIN / program), *args],
        env={**clean, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
