"""REST command round trips on an idle server: one device, answering at once.

``taskset -c 1 python bench/command_latency.py`` (MariaDB; ``--sqlite`` for a
SQLite file) starts ``edgefleet serve`` pinned to CPU 0, registers one device,
connects it from this process as a version-1 device that answers every order at
once, then times ``--commands`` sequential ``POST /devices/{id}/commands`` and as
many ``GET /devices/{id}`` of the same device (the floor: authentication and one
read). What a command costs beyond that GET is its trip to the device and its
history writes. The report goes to ``bench/results/command_latency.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.harness import ROOT, TOKEN, percentiles, recreate_database, start_server

DATABASE = "edgefleet_bench_commands"
RESULT = json.dumps(
    {
        "type": "upload_instruction_result",
        "status": "success",
        "Headers": {"message": "successfully exec order."},
        "data": {},
    }
)


async def device(url: str, device_id: str, password: str, ready: asyncio.Event) -> None:
    """A version-1 device: logs in, pings every 5 s, answers each order at once."""
    async with websockets.connect(url, compression=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"device_id": device_id, "password": password}))
        answer = json.loads(await ws.recv())
        if answer.get("status") != "success":
            raise SystemExit(f"login refused: {answer}")
        ready.set()

        async def pings() -> None:
            while True:
                await ws.send(json.dumps({"type": "ping_pong", "Headers": {}, "data": "ping"}))
                await asyncio.sleep(5)

        pinging = asyncio.create_task(pings())
        try:
            async for message in ws:
                if json.loads(message).get("type") == "give_order":
                    await ws.send(RESULT)
        finally:
            pinging.cancel()


async def measure(api: str, ws_url: str, count: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        body = {"name": "cam", "hardware_sn": "SN-bench", "hardware_model": "M1"}
        async with http.post(f"{api}/api/v1/devices", json=body) as response:
            registered = (await response.json())["data"]
        device_id = registered["device_id"]
        ready = asyncio.Event()
        answering = asyncio.create_task(device(ws_url, device_id, registered["password"], ready))
        await asyncio.wait_for(ready.wait(), 10)
        command_url = f"{api}/api/v1/devices/{device_id}/commands"
        device_url = f"{api}/api/v1/devices/{device_id}"

        async def timed(method: str, url: str, json_body: Any = None) -> float:
            start = time.perf_counter()
            async with http.request(method, url, json=json_body) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"{method} {url}: {response.status} {await response.text()}")
            return time.perf_counter() - start

        for _ in range(50):  # warm-up: connections, caches
            await timed("POST", command_url, {"order": "snapshot"})
            await timed("GET", device_url)
        commands = [await timed("POST", command_url, {"order": "snapshot"}) for _ in range(count)]
        gets = [await timed("GET", device_url) for _ in range(count)]
        answering.cancel()
        return {"command_round_trip": percentiles(commands), "get_device": percentiles(gets)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file, not MariaDB")
    parser.add_argument("--api-port", type=int, default=18280)
    parser.add_argument("--ws-port", type=int, default=19290)
    parser.add_argument("--metrics-port", type=int, default=19292)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/command_latency.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as work:
        url = f"sqlite+aiosqlite:///{work}/edgefleet.db" if args.sqlite else None
        url = url or recreate_database(DATABASE)
        # One device answering as fast as it is asked: more than the protocol's
        # frames a second, which a field device never needs.
        flags = ("--ws-port", str(args.ws_port), "--metrics-port", str(args.metrics_port),
                 "--max-frames-per-second", "100000")  # fmt: skip
        server = start_server(url, args.api_port, "WARNING", flags, log=Path(work) / "server.log")
        try:
            report = asyncio.run(
                measure(
                    f"http://127.0.0.1:{args.api_port}",
                    f"ws://127.0.0.1:{args.ws_port}/ws",
                    args.commands,
                )
            )
        finally:
            server.terminate()
            server.wait()
    report["database"] = "sqlite" if args.sqlite else "mariadb"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
