"""Access benchmark: what users, scopes and the event stream cost.

    python bench/access.py [--devices 100000] [--groups 1000] [--rate 500]
                           [--stream-clients 1000] [--changes 2000] [--duration 20]

1. Recreates ``edgefleet_bench_access`` on the local MariaDB and seeds the fleet
   (bench/northbound.py's seeding): ``--devices`` in ``--groups`` groups.
2. Starts ``edgefleet serve`` on it, pinned to CPU 0, and creates a user bound
   to the ``viewer`` role on 10 groups, and an API key for it.
3. From a load process pinned to CPU 1, open loop (latency from when each request
   was due): GET /devices/{id} of devices in those 10 groups with the bootstrap
   token, the user's access token and the API key, at ``--rate``; the user's
   scoped list (100 a page, one of the first 10 pages) and the same list for the
   bootstrap token at ``--list-rate``.
4. Token verification cost: JWT and API-key digest checks timed in the load process.
5. The stream: ``--stream-clients`` SSE connections (half the scoped user, half the
   bootstrap token each filtered to one random group) while a writer process, as
   the southbound recorders do, logs ``--changes`` device state changes a second
   in batches. Delivery latency is from the change's time in the log to its
   arrival at a client; server RSS is read before and after the clients connect.
6. Prints a summary and writes ``bench/results/access.json``.

Not part of the test suite; a smoke run with tiny numbers is:

    python bench/access.py --devices 2000 --groups 20 --rate 50 --list-rate 10 \\
        --duration 2 --stream-clients 20 --changes 100 --stream-duration 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import timeit
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import TOKEN, percentiles, recreate_database, start_server  # noqa: E402
from bench.northbound import closed_loop, open_loop, seed  # noqa: E402

DATABASE = "edgefleet_bench_access"
JWT_KEY = "bench-jwt-key-0123456789-0123456789"
PASSWORD = "bench user password"
SCOPED_GROUPS = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base: str, method: str, path: str, body: Any = None, token: str = TOKEN) -> Any:
    request = urllib.request.Request(
        base + "/api/v1" + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def rss_kib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


# --- the load process ----------------------------------------------------------------


def verification_costs(plan: dict[str, Any]) -> dict[str, float]:
    """Microseconds to verify one access token, and to check one API key's digest."""
    from edgefleet.controller.access.tokens import JwtKeys, api_key_prefix, same_digest

    keys = JwtKeys(JWT_KEY)
    token, key = plan["user_token"], plan["api_key"]
    stored = __import__("hashlib").sha256(key.encode()).hexdigest()
    runs = 20_000
    jwt_us = timeit.timeit(lambda: keys.verify(token), number=runs) / runs * 1e6
    key_us = (
        timeit.timeit(lambda: (api_key_prefix(key), same_digest(key, stored)), number=runs)
        / runs
        * 1e6
    )
    return {"jwt_verify_us": round(jwt_us, 1), "api_key_check_us": round(key_us, 1)}


async def stream_clients(plan: dict[str, Any]) -> dict[str, Any]:
    """Open the clients, tell the parent they are connected, read for the duration."""
    import aiohttp

    base, groups = plan["base"], plan["all_groups"]
    latencies: list[float] = []
    received = [0]
    ended: dict[str, int] = {}
    rng = random.Random(3)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(base, timeout=timeout, connector=connector) as session:
        opened = asyncio.Event()
        ready = [0]

        async def client(n: int) -> None:
            if n % 2:
                token, params = plan["user_token"], {}
            else:
                token, params = TOKEN, {"group_id": rng.choice(groups)}
            headers = {"Authorization": f"Bearer {token}"}
            try:
                async with session.get("/api/v1/stream", params=params, headers=headers) as r:
                    ready[0] += 1
                    if ready[0] == plan["clients"]:
                        opened.set()
                    async for line in r.content:
                        if line.startswith(b"data: "):
                            at = json.loads(line[6:])["at"]
                            sent = datetime.fromisoformat(at.rstrip("Z") + "+00:00").timestamp()
                            latencies.append(time.time() - sent)
                            received[0] += 1
                ended["closed_by_server"] = ended.get("closed_by_server", 0) + 1
            except (TimeoutError, aiohttp.ClientError) as exc:
                ended[type(exc).__name__] = ended.get(type(exc).__name__, 0) + 1

        tasks = [asyncio.create_task(client(n)) for n in range(plan["clients"])]
        await asyncio.wait_for(opened.wait(), 120)
        sys.stderr.write("clients connected\n")
        (Path(plan["work"]) / "clients-ready").touch()
        await asyncio.sleep(plan["stream_duration"])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "clients": plan["clients"],
        "events_received": received[0],
        "deliveries_per_second": round(received[0] / plan["stream_duration"], 1),
        "ended_early": ended,
        "delivery": percentiles(latencies),
    }


def load_main() -> None:
    plan = json.load(sys.stdin)
    base = plan["base"]
    rng = random.Random(2)
    scoped_ids = plan["scoped_device_ids"]
    by_id = [f"/api/v1/devices/{rng.choice(scoped_ids)}" for _ in range(20_000)]
    lists = [f"/api/v1/devices?per_page=100&page={rng.randint(1, 10)}" for _ in range(5_000)]
    rate, duration = plan["rate"], plan["duration"]
    results: dict[str, Any] = {"verification": verification_costs(plan)}
    for name, token in (("bootstrap", TOKEN), ("user", plan["user_token"]),
                        ("api_key", plan["api_key"])):  # fmt: skip
        results[f"get_by_id_{name}"] = asyncio.run(open_loop(base, by_id, rate, duration, token))
    results["list_scoped_user"] = asyncio.run(
        open_loop(base, lists, plan["list_rate"], duration, plan["user_token"])
    )
    results["list_bootstrap"] = asyncio.run(open_loop(base, lists, plan["list_rate"], duration))
    results["list_scoped_ceiling"] = asyncio.run(
        closed_loop(base, lists, 8, duration / 2, plan["user_token"])
    )
    results["stream"] = asyncio.run(stream_clients(plan))
    json.dump(results, sys.stdout)


# --- the writer process (what the southbound recorders do) ------------------------------


async def write_changes(plan: dict[str, Any]) -> None:
    from edgefleet.controller.store import Store
    from edgefleet.controller.store.sessions import SessionChange

    store = Store.from_url(plan["url"], timeout=30)
    rng = random.Random(4)
    ids = plan["device_ids"]
    batch = max(1, plan["changes"] // 20)  # 20 batches a second
    interval = batch / plan["changes"]
    deadline = time.monotonic() + plan["seconds"]
    written, behind = 0, 0.0
    next_at = time.monotonic()
    try:
        while time.monotonic() < deadline:
            changes = [
                SessionChange("state", rng.choice(ids), rng.choice(("online", "unknown")))
                for _ in range(batch)
            ]
            await store.sessions.apply(f"bench-pod-{written % 3}", changes)
            written += batch
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind = max(behind, -delay)
    finally:
        await store.close()
    json.dump({"changes_written": written, "most_behind_s": round(behind, 3)}, sys.stdout)


# --- the conductor -------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=500, help="GETs by id a second")
    parser.add_argument("--list-rate", type=float, default=50, help="list pages a second")
    parser.add_argument("--duration", type=float, default=20, help="seconds per REST scenario")
    parser.add_argument("--stream-clients", type=int, default=1_000)
    parser.add_argument("--changes", type=int, default=2_000, help="state changes a second")
    parser.add_argument("--stream-duration", type=float, default=30)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/access.json")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load_main()
        return
    if args.write:
        asyncio.run(write_changes(json.load(sys.stdin)))
        return

    url = recreate_database(DATABASE)
    started = time.perf_counter()
    device_ids = asyncio.run(seed(url, args.devices, args.devices // args.groups))
    print(f"seeded {args.devices} devices in {time.perf_counter() - started:.1f} s",
          file=sys.stderr)  # fmt: skip
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(url, port, "WARNING", (
        "--ws-port", "0", "--metrics-port", "0", "--jwt-key", JWT_KEY))  # fmt: skip
    work = ROOT / "bench/results/access-work"
    work.mkdir(parents=True, exist_ok=True)
    (work / "clients-ready").unlink(missing_ok=True)
    try:
        groups = call(base, "GET", f"/groups?per_page={min(500, args.groups)}")["items"]
        chosen = [g["group_id"] for g in random.Random(5).sample(groups, SCOPED_GROUPS)]
        roles = [{"role": "viewer", "group_id": g} for g in chosen]
        call(base, "POST", "/users", {"username": "bench", "password": PASSWORD, "roles": roles})
        pair = call(base, "POST", "/auth/login", {"username": "bench", "password": PASSWORD})
        key = call(base, "POST", "/api-keys", {"name": "bench"}, pair["access_token"])["key"]
        scoped: list[str] = []
        for group_id in chosen:
            members = call(base, "GET", f"/groups/{group_id}/devices?per_page=500")["items"]
            scoped += [device["device_id"] for device in members]
        plan = {
            "base": base,
            "url": url,
            "work": str(work),
            "user_token": pair["access_token"],
            "api_key": key,
            "scoped_device_ids": scoped,
            "all_groups": [g["group_id"] for g in groups],
            "rate": args.rate,
            "list_rate": args.list_rate,
            "duration": args.duration,
            "clients": args.stream_clients,
            "stream_duration": args.stream_duration,
        }
        rss_before = rss_kib(server.pid)
        load = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, __file__, "--load"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert load.stdin is not None
        load.stdin.write(json.dumps(plan))
        load.stdin.close()
        while not (work / "clients-ready").exists():
            if load.poll() is not None:
                raise SystemExit("the load process ended before its stream clients connected")
            time.sleep(0.1)
        rss_connected = rss_kib(server.pid)
        writer = subprocess.run(
            ["taskset", "-c", "1", sys.executable, __file__, "--write"],
            input=json.dumps({"url": url, "device_ids": device_ids, "changes": args.changes,
                              "seconds": args.stream_duration - 1}),
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert load.stdout is not None
        results = json.loads(load.stdout.read())
        load.wait(60)
        results["stream"]["writer"] = json.loads(writer.stdout)
        results["stream"]["server_rss_mib_before_clients"] = round(rss_before / 1024, 1)
        results["stream"]["server_rss_kib_per_client"] = round(
            (rss_connected - rss_before) / max(1, args.stream_clients), 1
        )
        rss_end = rss_kib(server.pid)
    finally:
        server.terminate()
        server.wait(30)

    report = {
        "benchmark": "access",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "server_cpu": 0, "load_cpu": 1},
        "database": "MariaDB (local)",
        "devices": args.devices,
        "groups": args.groups,
        "scoped_user_groups": SCOPED_GROUPS,
        "server_rss_mib_at_end": round(rss_end / 1024, 1),
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"verification: {results['verification']}")
    for name, result in results.items():
        if name in ("verification", "stream"):
            continue
        rate = result.get("achieved_rate", result.get("rate"))
        print(f"{name:24} {rate:>8} req/s  p50 {result.get('p50_ms')} ms  "
              f"p99 {result.get('p99_ms')} ms  errors {result.get('errors', {})}")  # fmt: skip
    stream = results["stream"]
    print(f"stream: {stream['clients']} clients, {stream['deliveries_per_second']} deliveries/s, "
          f"delivery p50 {stream['delivery'].get('p50_ms')} ms p99 "
          f"{stream['delivery'].get('p99_ms')} ms, ended early {stream['ended_early']}, "
          f"{stream['server_rss_kib_per_client']} KiB RSS per client, "
          f"writer {stream['writer']}")  # fmt: skip
    print(f"report: {args.output}")


if __name__ == "__main__":
    main()
