"""What a device costs on a metered link, per month, and how fast a dead link shows.

    python bench/wire_cost.py [--minutes 3] [--metered-minutes 10]

``edgefleet serve`` with TLS on its device port (a certificate made here, trusted
through a CA file), and a byte-counting TCP relay in front of it, so what is
counted is what crosses TCP: WebSocket frames inside TLS records. Three devices,
one after the other, each at the real cadence for the time given:

- ``v1``: a version-1 device (a small client here): ping every 5 s, its status
  (the agent's own reading of this machine) every 15 s;
- ``agent``: ``edgefleet-agent`` with its defaults (the same cadence, plus its
  session token at login);
- ``agent --metered``: ``edgefleet-agent --metered``: the server's metered heartbeat
  (24 s) and the status sent only when a percentage moved by 10 points, at least
  every 300 s.

Bytes are counted after login, so the TLS handshake and the login (once a
connection, not every month) are left out and reported apart. Months are 30 days.
IP and TCP headers are not in what a relay sees; they are estimated as 52 bytes (a
TCP/IPv4 header with timestamps) for each read either way, plus one ACK of 52
bytes for each — an upper bound, since ACKs often ride with data.

Then the relay goes silent (packets dropped, not refused) and the benchmark times
how long until the server marks the device offline, and until the agent gives up
the connection and dials again (its reconnect delay, 10 s and jitter, included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import CountingRelay  # noqa: E402

TOKEN = "bench-token"
MONTH = 30 * 86400
HEADER = 52


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def api(base: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{base}/api/v1{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


async def until_state(base: str, device_id: str, wanted: str, since: float) -> float:
    while True:
        device = await asyncio.to_thread(api, base, "GET", f"/devices/{device_id}")
        if device["state"] == wanted:
            return time.monotonic() - since
        await asyncio.sleep(0.2)


async def v1_device(url: str, device: dict[str, Any], context: ssl.SSLContext) -> None:
    """A version-1 device: password login, ping every 5 s, status every 15 s."""
    import websockets

    from edgefleet.agent import protocol
    from edgefleet.agent.status import collect

    async with websockets.connect(url, ssl=context, compression=None, ping_interval=None) as ws:
        login = {"device_id": device["device_id"], "password": device["password"]}
        await ws.send(json.dumps(login))
        await ws.recv()
        reader = asyncio.create_task(_drain(ws))
        try:
            tick = 0
            while True:
                if tick % 3 == 0:
                    status = await asyncio.to_thread(collect)
                    await ws.send(protocol.status_upload(device["device_id"], status))
                else:
                    await ws.send(protocol.ping())
                tick += 1
                await asyncio.sleep(5)
        finally:
            reader.cancel()


async def _drain(ws: Any) -> None:
    async for _ in ws:
        pass


def per_month(relay: CountingRelay, before: dict[str, dict[str, int]], seconds: float) -> dict:
    scale = MONTH / seconds
    payload = {d: (relay.bytes[d] - before["bytes"][d]) * scale for d in ("up", "down")}
    reads = sum(relay.reads[d] - before["reads"][d] for d in ("up", "down")) * scale
    return {
        "tls_payload_mb": round(sum(payload.values()) / 1e6, 2),
        "up_mb": round(payload["up"] / 1e6, 2),
        "down_mb": round(payload["down"] / 1e6, 2),
        "with_tcp_ip_headers_mb": round((sum(payload.values()) + reads * 2 * HEADER) / 1e6, 2),
    }


async def measure(
    name: str, args: argparse.Namespace, base: str, ws_port: int, work: Path, minutes: float
) -> dict[str, Any]:
    certificates = args.certificates
    relay = CountingRelay(ws_port)
    await relay.start()
    url = f"wss://localhost:{relay.port}/ws"
    body = {"name": name, "hardware_sn": f"SN-{name}", "hardware_model": "M"}
    device = await asyncio.to_thread(api, base, "POST", "/devices", body)
    (work / f"{name}.password").write_text(device["password"])
    agent: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    try:
        if name == "v1":
            context = ssl.create_default_context(cafile=str(certificates.ca))
            task = asyncio.create_task(v1_device(url, device, context))
        else:
            flags = ["--metered", "true"] if name.endswith("metered") else []
            agent = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edgefleet.agent.cli", "--server", url,
                "--ca-file", str(certificates.ca), "--device-id", device["device_id"],
                "--password-file", str(work / f"{name}.password"),
                "--state-dir", str(work / name / "state"), "--log-dir", str(work / name / "log"),
                *flags, cwd=ROOT, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        progress(f"{name}: starting")
        await until_state(base, device["device_id"], "online", time.monotonic())
        progress(f"{name}: online, measuring for {minutes:g} min")
        await asyncio.sleep(2)  # the first status upload and its answer are part of login
        at_login = {"bytes": dict(relay.bytes), "reads": dict(relay.reads)}
        started = time.monotonic()
        await asyncio.sleep(minutes * 60)
        report = per_month(relay, at_login, time.monotonic() - started)
        report["login_bytes"] = sum(at_login["bytes"].values())
        connections = relay.connections
        relay.freeze()
        frozen = time.monotonic()
        progress(f"{name}: link silent, waiting for both ends to notice")

        async def server_notices() -> None:
            seconds = await until_state(base, device["device_id"], "offline", frozen)
            report["server_notices_dead_link_s"] = round(seconds, 1)

        async def agent_notices() -> None:  # it dials again once it gave up the link
            await relay.dialled(connections + 1)
            report["agent_redials_after_s"] = round(time.monotonic() - frozen, 1)

        await asyncio.gather(server_notices(), *([agent_notices()] if agent else []))
        return report
    finally:
        if task is not None:
            task.cancel()
        if agent is not None:
            agent.terminate()
            await agent.wait()


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from tests.certificates import make_certificates

    args.certificates = make_certificates(work / "tls")
    api_port, ws_port = 18380, 19390
    base = f"http://127.0.0.1:{api_port}"
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgefleet.controller.cli", "serve", "--api-port", str(api_port),
        "--ws-port", str(ws_port), "--metrics-port", str(ws_port + 2),
        "--tls-cert-file", str(args.certificates.server_cert),
        "--tls-key-file", str(args.certificates.server_key),
        "--db-url", f"sqlite+aiosqlite:///{work}/edgefleet.db", "--api-token", TOKEN,
        "--bcrypt-rounds", "4", "--log-level", "WARNING",
        cwd=ROOT, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(300):
            try:
                await asyncio.to_thread(api, base, "GET", "/health")
                break
            except OSError:
                await asyncio.sleep(0.1)
        return {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "v1": await measure("v1", args, base, ws_port, work, args.minutes),
            "agent": await measure("agent", args, base, ws_port, work, args.minutes),
            "agent_metered": await measure(
                "agent-metered", args, base, ws_port, work, args.metered_minutes
            ),
        }
    finally:
        server.terminate()
        await server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--metered-minutes", type=float, default=10.0)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/wire_cost.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        report = asyncio.run(run(args, Path(work)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
