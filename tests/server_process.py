"""``edgefleet serve`` as a real child process, for tests of the whole program."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


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
