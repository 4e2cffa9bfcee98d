"""Northbound REST benchmark: 100,000 devices in MariaDB, load from another process.

    python bench/northbound.py [--devices 100000] [--rates 250,500,750,1000] [--duration 20]

1. Recreates the database ``edgefleet_bench`` on the local MariaDB and seeds it
   through the store's schema: devices of four types, in groups of 1,000.
2. Starts ``edgefleet serve`` on it as a child process pinned to CPU 0.
3. Runs the load as a separate process pinned to CPU 1, open loop: requests are
   sent on a fixed schedule whatever the answers do, and each latency is measured
   from the moment its request was due, so a server that falls behind cannot
   hide it (no coordinated omission).
4. Prints a summary and writes a JSON report (``bench/results/northbound.json``).

Scenarios: GET /devices/{id} for random ids at each of ``--rates``; GET /devices with
``type`` filter, 100 per page, on one of the first ten pages, at ``--list-rate``;
and the closed-loop ceilings (the most requests a second the server answers, with
32 GETs or 8 list requests in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import TOKEN, percentiles, recreate_database, start_server  # noqa: E402

TYPES = ["camera", "gateway", "sensor", "rail-sensor"]
STATES = ["offline"] * 6 + ["online"] * 3 + ["unknown"]
DATABASE = "edgefleet_bench"


async def seed(url: str, devices: int, group_size: int) -> list[int]:
    """Insert the fleet in bulk; returns the device ids."""
    import bcrypt
    from sqlalchemy import insert

    from edgefleet.controller.ids import SnowflakeGenerator
    from edgefleet.controller.store import Store
    from edgefleet.controller.store.database import utcnow
    from edgefleet.controller.store.schema import device_group_members, device_groups
    from edgefleet.controller.store.schema import devices as devices_table

    store = Store.from_url(url, timeout=60)
    await store.migrate()
    ids = SnowflakeGenerator(worker_id=7)
    secret = bcrypt.hashpw(b"bench password 0", bcrypt.gensalt(4)).decode()
    now = utcnow()
    rng = random.Random(1)
    groups = [ids.next_id() for _ in range((devices + group_size - 1) // group_size)]
    device_ids = [ids.next_id() for _ in range(devices)]
    async with store.db.begin() as connection:
        await connection.execute(
            insert(device_groups),
            [
                {
                    "group_id": g,
                    "name": f"group-{n:04d}",
                    "description": "",
                    "created_at": now,
                    "updated_at": now,
                }
                for n, g in enumerate(groups)
            ],
        )
    chunk = 5000
    for start in range(0, devices, chunk):
        rows, members = [], []
        for n in range(start, min(start + chunk, devices)):
            device_id = device_ids[n]
            rows.append(
                {
                    "device_id": device_id,
                    "name": f"device {n:06d}",
                    "type": TYPES[n % len(TYPES)],
                    "description": "",
                    "hardware_sn": f"SN{n:08d}",
                    "hardware_model": "BenchModel",
                    "secret": secret,
                    "credential_version": 1,
                    "state": rng.choice(STATES),
                    "disabled": False,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            members.append(
                {"device_id": device_id, "group_id": groups[n // group_size], "created_at": now}
            )
        async with store.db.begin() as connection:
            await connection.execute(insert(devices_table), rows)
            await connection.execute(insert(device_group_members), members)
    await store.close()
    return device_ids


async def open_loop(
    base: str, paths: list[str], rate: float, duration: float, token: str = TOKEN
) -> dict[str, Any]:
    """Send ``rate`` requests a second for ``duration`` seconds, on schedule."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=256)
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:

        async def one(path: str, due: float) -> None:
            try:
                async with session.get(path) as response:
                    await response.read()
                    if response.status != 200:
                        errors[str(response.status)] = errors.get(str(response.status), 0) + 1
                        return
            except aiohttp.ClientError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            latencies.append(time.perf_counter() - due)

        # Warm the connection pool and the server's caches.
        await asyncio.gather(*(one(paths[i % len(paths)], time.perf_counter()) for i in range(200)))
        latencies.clear()

        total = int(rate * duration)
        start = time.perf_counter() + 0.1
        tasks = []
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(paths[i % len(paths)], due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {
        "target_rate": rate,
        "requests": total,
        "ok": len(latencies),
        "errors": errors,
        "achieved_rate": round(total / elapsed, 1),
        **percentiles(latencies),
    }


async def closed_loop(
    base: str, paths: list[str], concurrency: int, duration: float, token: str = TOKEN
) -> dict:
    """How many requests a second the server answers with ``concurrency`` in flight."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration
    async with aiohttp.ClientSession(base, headers=headers) as session:

        async def worker(offset: int) -> None:
            i = offset
            while time.perf_counter() < stop_at:
                sent = time.perf_counter()
                async with session.get(paths[i % len(paths)]) as response:
                    await response.read()
                latencies.append(time.perf_counter() - sent)
                i += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "rate": round(len(latencies) / elapsed, 1),
        **percentiles(latencies),
    }


def load_main(args: argparse.Namespace) -> None:
    """The load process: reads its plan from stdin, writes results to stdout."""
    plan = json.load(sys.stdin)
    rng = random.Random(2)
    ids = plan["device_ids"]
    by_id = [f"/api/v1/devices/{rng.choice(ids)}" for _ in range(20_000)]
    lists = [
        f"/api/v1/devices?type={rng.choice(TYPES)}&per_page=100&page={rng.randint(1, 10)}"
        for _ in range(5_000)
    ]
    base = plan["base"]
    results = {
        f"get_by_id_at_{rate:g}": asyncio.run(open_loop(base, by_id, rate, plan["duration"]))
        for rate in plan["rates"]
    }
    results |= {
        "list_page_of_100_filtered": asyncio.run(
            open_loop(base, lists, plan["list_rate"], plan["duration"])
        ),
        "get_by_id_ceiling": asyncio.run(closed_loop(base, by_id, 32, plan["duration"] / 2)),
        "list_ceiling": asyncio.run(closed_loop(base, lists, 8, plan["duration"] / 2)),
    }
    json.dump(results, sys.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--group-size", type=int, default=1_000)
    parser.add_argument(
        "--rates", default="250,500,750,1000", help="GET-by-id rates to run, per second"
    )
    parser.add_argument("--list-rate", type=float, default=50, help="list pages per second")
    parser.add_argument("--duration", type=float, default=20, help="seconds per scenario")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--log-level", default="INFO", help="the server's log level")
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/northbound.json")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load_main(args)
        return

    url = recreate_database(DATABASE)
    started = time.perf_counter()
    device_ids = asyncio.run(seed(url, args.devices, args.group_size))
    seeded_in = time.perf_counter() - started
    print(f"seeded {args.devices} devices in {seeded_in:.1f} s", file=sys.stderr)

    server = start_server(url, args.port, args.log_level)
    try:
        plan = {
            "base": f"http://127.0.0.1:{args.port}",
            "device_ids": [str(i) for i in device_ids],
            "rates": [float(r) for r in args.rates.split(",")],
            "list_rate": args.list_rate,
            "duration": args.duration,
        }
        load = subprocess.run(
            ["taskset", "-c", "1", sys.executable, __file__, "--load"],
            input=json.dumps(plan),
            capture_output=True,
            text=True,
            check=True,
        )
        results = json.loads(load.stdout)
        rss_kib = int(Path(f"/proc/{server.pid}/status").read_text().split("VmRSS:")[1].split()[0])
    finally:
        server.terminate()
        server.wait(30)

    report = {
        "benchmark": "northbound",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "server_cpu": 0, "load_cpu": 1},
        "database": "MariaDB (local)",
        "devices": args.devices,
        "groups": len(device_ids) // args.group_size,
        "server_log_level": args.log_level,
        "seed_seconds": round(seeded_in, 1),
        "server_rss_mib": round(rss_kib / 1024, 1),
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    for name, result in results.items():
        rate = result.get("achieved_rate", result.get("rate"))
        print(
            f"{name:28} {rate:>8} req/s  p50 {result.get('p50_ms')} ms  "
            f"p99 {result.get('p99_ms')} ms  errors {result.get('errors', {})}"
        )
    print(f"report: {args.output}")


if __name__ == "__main__":
    main()
