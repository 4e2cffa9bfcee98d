"""Password logins under overload, at bcrypt cost 12, as version-1 devices behave.

    python bench/login_overload.py ramp --rate 50 [--devices 1000]
    python bench/login_overload.py drop [--devices 10000]
    python bench/login_overload.py kill [--devices 10000]

Every device speaks plain version 1 (no token, no extension): it connects, sends
its password, waits up to 60 s for the answer; refused, busy or unanswered, it
closes and comes back 10 s (plus up to 2 s of jitter) later; logged in, it pings
every 5 s and reconnects the same way when its connection drops.

- ``ramp``: devices never seen before (no verified credential) arrive at
  ``--rate`` a second. Reported: logins completed per second against the bcrypt
  capacity of the server's core (measured first, with the same number of threads),
  every device in, any device-side 60 s timeout.
- ``drop``: every device logged in (their passwords verified before, as after
  their first login ever), then every connection dropped at the same instant.
  Reported: seconds until all are back.
- ``kill``: the same, but the server is killed (SIGKILL) and started again.
  Reported: seconds until all are back, and whether any device is ``online`` in
  the database without a session once they are.

The server (``edgefleet serve``, MariaDB) runs on CPU 0, the devices in load
processes on CPU 1. A JSON report goes to ``bench/results/login_overload_<scenario>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import percentiles, recreate_database, run_load_process  # noqa: E402
from bench.southbound_load import PASSWORD, PEPPER, raise_fd_limit, seed  # noqa: E402

DATABASE = "edgefleet_login_overload_bench"
TOKEN = "bench-token"
ROUNDS = 12
ANSWER_WAIT = 60.0
RECONNECT = 10.0


# --- the load process ----------------------------------------------------------------


class Device:
    """A version-1 device: password login, ping every 5 s, reconnect after 10 s."""

    def __init__(self, device_id: str, source: str, url: str, password: str) -> None:
        self.device_id, self.source, self.url, self.password = device_id, source, url, password
        self.ws: Any = None
        self.logged_in_at: list[float] = []
        self.outcomes: dict[str, int] = {}
        self.on_login: Callable[[], None] = lambda: None

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    async def live(self, start_at: float, until: float) -> None:
        import websockets

        await asyncio.sleep(max(0.0, start_at - time.time()))
        while time.time() < until:
            try:
                self.ws = await websockets.connect(
                    self.url, compression=None, open_timeout=ANSWER_WAIT, ping_interval=None,
                    close_timeout=1, local_addr=(self.source, 0),
                )  # fmt: skip
                login = {"device_id": self.device_id, "password": self.password}
                await self.ws.send(json.dumps(login))
                async with asyncio.timeout(ANSWER_WAIT):
                    answer = json.loads(await self.ws.recv())
            except TimeoutError:
                self.count("answer_timeout")
            except Exception as exc:
                self.count(type(exc).__name__)
            else:
                if answer.get("status") == "success":
                    self.logged_in_at.append(time.time())
                    self.count("success")
                    self.on_login()
                    await self._stay(until)
                else:
                    self.count(answer.get("message", "refused"))
            if self.ws is not None:
                self.ws.transport.abort()
            await asyncio.sleep(RECONNECT + random.uniform(0, 2))

    async def _stay(self, until: float) -> None:
        """Ping every 5 s until the connection drops or the run ends."""
        try:
            while time.time() < until:
                await self.ws.send('{"type":"ping_pong","Headers":{},"data":"ping"}')
                async with asyncio.timeout(3):
                    await self.ws.recv()
                await asyncio.sleep(5)
        except Exception:
            self.count("dropped")

    def drop(self) -> None:
        if self.ws is not None:
            self.ws.transport.abort()  # no close handshake: a dead link


async def load_main(plan: dict[str, Any]) -> dict[str, Any]:
    raise_fd_limit()
    devices = [
        Device(d, f"127.0.0.{2 + (i % 50)}", plan["url"], plan["password"])
        for i, d in enumerate(plan["device_ids"])
    ]
    starts = [plan["start_at"] + i / plan["rate"] for i in range(len(devices))]
    lives = [
        asyncio.create_task(d.live(s, plan["until"])) for d, s in zip(devices, starts, strict=True)
    ]
    drop_at = plan.get("drop_at")
    if drop_at:
        await asyncio.sleep(max(0.0, drop_at - time.time()))
        for device in devices:
            device.drop()
    # Done when every device is (back) in after ``back_after``, or at ``until``.
    since = plan.get("back_after", 0.0)
    everyone_in = asyncio.Event()

    def logged_in() -> None:
        if all(any(t >= since for t in d.logged_in_at) for d in devices):
            everyone_in.set()

    for device in devices:
        device.on_login = logged_in
    logged_in()
    try:
        async with asyncio.timeout(max(0.0, plan["until"] - time.time())):
            await everyone_in.wait()
    except TimeoutError:
        pass
    for life in lives:
        life.cancel()
    await asyncio.gather(*lives, return_exceptions=True)
    outcomes: dict[str, int] = {}
    for device in devices:
        for name, n in device.outcomes.items():
            outcomes[name] = outcomes.get(name, 0) + n
    return {"logins": [d.logged_in_at for d in devices], "outcomes": outcomes}


# --- the parent ------------------------------------------------------------------------


def bcrypt_capacity(threads: int, seconds: float = 8.0) -> float:
    """Checks a second the server's core does at cost 12 with ``threads`` threads
    (measured in a child pinned to that core)."""
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, __file__, "--capacity", str(threads), str(seconds)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(out.stdout)


def measure_capacity(threads: int, seconds: float) -> float:
    import threading

    import bcrypt

    hashed = bcrypt.hashpw(b"x", bcrypt.gensalt(ROUNDS))
    end = time.time() + seconds
    done = [0] * threads

    def run(n: int) -> None:
        while time.time() < end:
            bcrypt.checkpw(b"x", hashed)
            done[n] += 1

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done) / seconds


def start_server(args: argparse.Namespace, url: str) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "edgefleet.controller.cli", "serve",
         "--db-url", url, "--api-port", str(args.api_port), "--ws-port", str(args.ws_port),
         "--metrics-port", str(args.metrics_port), "--api-token", TOKEN,
         "--bcrypt-rounds", str(ROUNDS), "--password-pepper", PEPPER,
         "--instance", "bench-southbound", "--login-attempts-per-device", "1000",
         "--login-failures-per-address", "100000", "--login-queue-order", args.order,
         "--log-level", "WARNING"],
        cwd=ROOT, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{args.api_port}/api/v1/health", timeout=1)
            return server
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not come up")


def fleet_states(args: argparse.Namespace) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{args.api_port}/api/v1/stats",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    return json.load(urllib.request.urlopen(request, timeout=30))["data"]


def run_load(
    args: argparse.Namespace, ids: list[int], plan: dict[str, Any]
) -> list[subprocess.Popen[str]]:
    share = (len(ids) + args.load_processes - 1) // args.load_processes
    processes = []
    for n in range(args.load_processes):
        part = {**plan, "device_ids": [str(i) for i in ids[n * share : (n + 1) * share]],
                "rate": plan["rate"] / args.load_processes}  # fmt: skip
        process = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, __file__, "--load"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdin is not None
        process.stdin.write(json.dumps(part))
        process.stdin.close()
        processes.append(process)
    return processes


def collect(processes: list[subprocess.Popen[str]]) -> dict[str, Any]:
    logins: list[list[float]] = []
    outcomes: dict[str, int] = {}
    for process in processes:
        assert process.stdout is not None
        report = json.loads(process.stdout.read())
        process.wait()
        logins += report["logins"]
        for name, n in report["outcomes"].items():
            outcomes[name] = outcomes.get(name, 0) + n
    return {"logins": logins, "outcomes": outcomes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", choices=["ramp", "drop", "kill"])
    parser.add_argument("--devices", type=int)
    parser.add_argument("--rate", type=float, default=50.0, help="ramp: arrivals a second")
    parser.add_argument("--order", default="fifo", choices=["fifo", "lifo"])
    parser.add_argument(
        "--settle", type=float, default=120.0, help="drop, kill: seconds to log in before"
    )
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--api-port", type=int, default=18280)
    parser.add_argument("--ws-port", type=int, default=19290)
    parser.add_argument("--metrics-port", type=int, default=19292)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--capacity", nargs=2, type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.capacity:
        print(measure_capacity(int(args.capacity[0]), args.capacity[1]))
        return
    if args.load:
        print(json.dumps(run_load_process(load_main(json.load(sys.stdin)))))
        return
    if args.scenario is None:
        parser.error("name a scenario: ramp, drop or kill")
    count = args.devices or (1000 if args.scenario == "ramp" else 10_000)
    raise_fd_limit()
    capacity = bcrypt_capacity(threads=4)
    url = recreate_database(DATABASE)
    # ramp: devices never seen before; drop, kill: each logged in once before.
    ids = asyncio.run(seed(url, count, ROUNDS, None if args.scenario == "ramp" else PEPPER))
    password = PASSWORD
    server = start_server(args, url)
    report: dict[str, Any] = {
        "benchmark": "login_overload",
        "scenario": args.scenario,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "devices": count,
        "bcrypt_rounds": ROUNDS,
        "order": args.order,
        "bcrypt_capacity_per_second": round(capacity, 2),
    }
    try:
        start = time.time() + 3
        if args.scenario == "ramp":
            plan = {"url": f"ws://127.0.0.1:{args.ws_port}/ws", "password": password,
                    "start_at": start, "rate": args.rate,
                    "until": start + count / args.rate + 1.3 * count / capacity + 120}  # fmt: skip
            result = collect(run_load(args, ids, plan))
            report |= ramp_report(result, start, capacity, count)
        else:
            drop_at = start + args.settle
            plan = {"url": f"ws://127.0.0.1:{args.ws_port}/ws", "password": password,
                    "start_at": start, "rate": 500.0, "until": drop_at + 90,
                    "back_after": drop_at,
                    "drop_at": drop_at if args.scenario == "drop" else None}  # fmt: skip
            processes = run_load(args, ids, plan)
            if args.scenario == "kill":
                time.sleep(max(0.0, drop_at - time.time()))
                server.send_signal(signal.SIGKILL)
                server.wait()
                server = start_server(args, url)
            result = collect(processes)
            report |= storm_report(result, drop_at, count)
            time.sleep(5)
            report["after"] = fleet_states(args)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
    output = args.output or ROOT / f"bench/results/login_overload_{args.scenario}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def ramp_report(
    result: dict[str, Any], start: float, capacity: float, count: int
) -> dict[str, Any]:
    firsts = sorted(times[0] - start for times in result["logins"] if times)
    per_second: dict[int, int] = {}
    for at in firsts:
        per_second[int(at)] = per_second.get(int(at), 0) + 1
    busy_span = firsts[-1] - firsts[0] if len(firsts) > 1 else 0.0
    rate = len(firsts) / busy_span if busy_span else 0.0
    return {
        "devices_in": len(firsts),
        "seconds_to_all_in": round(firsts[-1], 1) if len(firsts) == count else None,
        "logins_per_second": round(rate, 2),
        "share_of_capacity": round(rate / capacity, 3) if capacity else None,
        "first_login_seconds": percentiles(firsts),
        "outcomes": result["outcomes"],
        "logins_by_second": per_second,
    }


def storm_report(result: dict[str, Any], drop_at: float, count: int) -> dict[str, Any]:
    before = sum(1 for times in result["logins"] if any(t < drop_at for t in times))
    back = sorted(
        min(t for t in times if t >= drop_at) - drop_at
        for times in result["logins"]
        if any(t >= drop_at for t in times)
    )
    return {
        "devices_in_before": before,
        "devices_back": len(back),
        "seconds_to_all_back": round(back[-1], 1) if len(back) == count else None,
        "back_seconds": percentiles(back),
        "outcomes": result["outcomes"],
    }


if __name__ == "__main__":
    main()
