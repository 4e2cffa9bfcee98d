"""The agent's footprint on a device: memory, CPU and bytes on the wire per hour.

Edge devices are small and often on metered 4G, so these are the agent's budget.
The benchmark runs ``edgefleet serve`` (SQLite) and ``edgefleet-agent`` as real
processes at the protocol's real cadence (ping every 5 s, status every 15 s),
with the agent's WebSocket going through a byte-counting relay in this process.
It samples the agent's RSS and USS every second, and reports the CPU time it used,
the bytes each way scaled to an hour, and how long a cold start took to come
online. A restart command halfway through measures re-exec to online again.

    python bench/agent_footprint.py --seconds 120
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import CountingRelay  # noqa: E402

TOKEN = "bench-token"


def api(base: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{base}/api/v1{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


async def wait_online(base: str, device_id: str, since: float) -> float:
    while True:
        state = await asyncio.to_thread(api, base, "GET", f"/devices/{device_id}")
        if state["state"] == "online":
            return time.monotonic() - since
        await asyncio.sleep(0.05)


async def wait_connected(base: str, path: str, since: float, times: int) -> float:
    """Seconds until the device's log holds its ``times``-th ``connected`` event."""
    while True:
        events = await asyncio.to_thread(api, base, "GET", f"{path}/events?event=connected")
        if events["total"] >= times:
            return time.monotonic() - since
        await asyncio.sleep(0.02)


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    api_port, ws_port = 18280, 19290
    base = f"http://127.0.0.1:{api_port}"
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgefleet.controller.cli", "serve", "--api-port", str(api_port),
        "--ws-port", str(ws_port), "--metrics-port", str(ws_port + 2),
        "--db-url", f"sqlite+aiosqlite:///{work}/edgefleet.db",
        "--api-token", TOKEN, "--bcrypt-rounds", "4", "--log-level", "WARNING",
        cwd=ROOT, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    relay = CountingRelay(ws_port)
    await relay.start()
    agent: asyncio.subprocess.Process | None = None
    try:
        for _ in range(300):
            try:
                await asyncio.to_thread(api, base, "GET", "/health")
                break
            except OSError:
                await asyncio.sleep(0.1)
        device = await asyncio.to_thread(
            api, base, "POST", "/devices",
            {"name": "bench", "hardware_sn": "SN-bench", "hardware_model": "M"},
        )  # fmt: skip
        (work / "password").write_text(device["password"])
        started = time.monotonic()
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edgefleet.agent.cli", "--server", f"ws://127.0.0.1:{relay.port}/ws",
            "--device-id", device["device_id"], "--password-file", str(work / "password"),
            "--state-dir", str(work / "state"), "--log-dir", str(work / "log"),
            cwd=ROOT, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        cold_start = await wait_online(base, device["device_id"], started)
        process = psutil.Process(agent.pid)
        cpu_before = sum(process.cpu_times()[:2])
        before, measured_from = dict(relay.bytes), time.monotonic()
        rss, uss = [], []
        while time.monotonic() - measured_from < args.seconds:
            info = process.memory_full_info()
            rss.append(info.rss)
            uss.append(info.uss)
            await asyncio.sleep(1)
        elapsed = time.monotonic() - measured_from
        cpu = sum(process.cpu_times()[:2]) - cpu_before
        hour = 3600 / elapsed
        up, down = (relay.bytes[d] - before[d] for d in ("up", "down"))

        restart_at = time.monotonic()
        path = f"/devices/{device['device_id']}"
        await asyncio.to_thread(api, base, "POST", path + "/commands", {"order": "restart"})
        restart = await wait_connected(base, path, restart_at, times=2)
        return {
            "seconds_measured": round(elapsed, 1),
            "cold_start_to_online_s": round(cold_start, 3),
            "restart_to_online_again_s": round(restart, 3),
            "rss_mib": {
                "median": round(statistics.median(rss) / 2**20, 1),
                "max": round(max(rss) / 2**20, 1),
            },
            "uss_mib_median": round(statistics.median(uss) / 2**20, 1),
            "cpu_percent_of_one_core": round(cpu / elapsed * 100, 3),
            "cpu_seconds_per_hour": round(cpu * hour, 1),
            "bytes_per_hour": {"up": round(up * hour), "down": round(down * hour)},
        }
    finally:
        if agent is not None:
            agent.terminate()
            await agent.wait()
        server.terminate()
        await server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120, help="seconds measured")
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/agent_footprint.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        report = asyncio.run(run(args, Path(work)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
