"""Southbound load benchmark: many version-1 devices over real sockets.

    python bench/southbound_load.py [--devices 10000] [--steady 60]

1. Recreates the MariaDB database ``edgefleet_southbound_bench`` and seeds the
   devices in bulk (one bcrypt hash for all, at ``--bcrypt-rounds``, 12 as users
   run it), each with the verified digest of its earlier login: a fleet that has
   logged in before, whose password logins cost one HMAC. First logins ever, where
   bcrypt is the work, are ``bench/login_overload.py ramp``.
2. Starts ``edgefleet serve`` pinned to CPU 0.
3. Starts ``--load-processes`` load processes pinned to CPU 1. Each device speaks
   plain version 1 at the protocol's cadence (ping every 5 s, status every 15 s,
   starting at random offsets), and answers custom commands; the only extension
   used is the session token, in the token storm.
4. Phases, on a shared clock:
   - login: every device logs in with its password (an unplanned storm);
   - steady: pong round trips are recorded; the parent meanwhile measures the
     server's RSS and REST command round trips (``--command-rate`` a second to
     random devices), and a scraper process times ``/metrics``;
   - token storm: every device drops its connection at the same instant and
     comes back with its session token; time until the last is back;
   - password storm: the same with passwords.
5. Prints a summary and writes ``bench/results/southbound_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    TOKEN,
    CpuSampler,
    percentiles,
    recreate_database,
    run_load_process,
    start_server,
)

DATABASE = "edgefleet_southbound_bench"
PEPPER = "bench pepper"
PASSWORD = "bench password 0"
STATUS = {
    "CPU_info": {
        "user_cpu_time": 4112.78,
        "system_cpu_time": 923.85,
        "idle_cpu_time": 179258.0,
        "io_wait_cpu_time": 120.6,
    },
    "Memory_info": {"total_memory_mb": 1673, "free_memory_mb": 91, "buff_cache_mb": 258},
    "Disk_info": {
        "root_total_size_mb": 39942,
        "root_used_size_mb": 10509,
        "root_used_percent": 27.6,
    },
    "dev_state": "online",
}


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the load process ---------------------------------------------------------------


class Device:
    """One simulated device: a version-1 client plus the session token extension."""

    def __init__(self, device_id: str, source: str, url: str) -> None:
        self.device_id = device_id
        self.source = source
        self.url = url
        self.token: str | None = None
        self.ws: Any = None
        self.rtts: list[float] = []
        self.ping_sent: float | None = None
        self.record = False
        self.extensions: list[str] = []
        """Listed at login (section 6); none: a version-1 device."""

    async def login(self, use_token: bool) -> str | None:
        """Log in; None on success, else why not."""
        import websockets

        frame = {"device_id": self.device_id}
        frame |= {"token": self.token} if use_token and self.token else {"password": PASSWORD}
        if self.extensions:
            frame["extensions"] = self.extensions
        try:
            self.ws = await websockets.connect(
                self.url,
                compression=None,
                open_timeout=60,
                ping_interval=None,
                close_timeout=1,
                local_addr=(self.source, 0),
            )
            await self.ws.send(json.dumps(frame))
            answer = json.loads(await self.ws.recv())
        except Exception as exc:
            closed = getattr(exc, "rcvd", None)
            return (
                f"{type(exc).__name__} {closed.code} {closed.reason}"
                if closed
                else type(exc).__name__
            )
        if answer.get("status") != "success":
            return answer.get("message", "refused")
        self.token = answer["data"].get("token", self.token)
        return None

    async def speak(self, stop_at: float) -> None:
        """Heartbeat and status at the protocol's cadence; answer orders; read pongs."""
        reader = asyncio.create_task(self._read())
        offset = random.uniform(0, 5)
        next_ping = time.time() + offset
        next_status = time.time() + random.uniform(0, 15)
        try:
            while time.time() < stop_at and not reader.done():
                now = time.time()
                if now >= next_status:
                    await self.ws.send(
                        json.dumps(
                            {
                                "type": "upload_status_info",
                                "Headers": {},
                                "data": {"device_id": self.device_id, **STATUS},
                            }
                        )
                    )
                    next_status = now + 15
                    next_ping = now + 5  # a business frame replaces a heartbeat
                elif now >= next_ping:
                    self.ping_sent = time.perf_counter()
                    await self.ws.send('{"type":"ping_pong","Headers":{},"data":"ping"}')
                    next_ping = now + 5
                await asyncio.sleep(max(0.0, min(next_ping, next_status, stop_at) - time.time()))
        except Exception:
            pass
        reader.cancel()

    async def _read(self) -> None:
        async for message in self.ws:
            frame = json.loads(message)
            kind = frame.get("type")
            if kind == "ping_pong" and self.ping_sent is not None:
                if self.record:
                    self.rtts.append(time.perf_counter() - self.ping_sent)
                self.ping_sent = None
            elif kind == "give_order":
                await self.on_order(frame)
            else:
                await self.on_frame(frame)

    async def on_order(self, frame: dict[str, Any]) -> None:
        """A command: a version-1 device runs it and says it succeeded."""
        await self.ws.send(
            json.dumps(
                {
                    "type": "upload_instruction_result",
                    "status": "success",
                    "Headers": {"message": "successfully exec order."},
                    "data": {},
                }
            )
        )

    async def on_frame(self, frame: dict[str, Any]) -> None:
        """Any other frame: what an extension device does with it (nothing here)."""

    async def drop(self) -> None:
        if self.ws is not None:
            self.ws.transport.abort()  # like a pod dying: no close handshake


async def storm(
    devices: list[Device], use_token: bool, at: float, talk_until: float
) -> tuple[dict[str, Any], list[asyncio.Task[None]]]:
    """Every device (re)connects at ``at`` and, once back, talks until
    ``talk_until``; returns when each was back and why attempts failed."""
    await asyncio.sleep(max(0.0, at - time.time()))
    started = time.time()
    back: list[float] = []
    failures: dict[str, int] = {}
    talking: list[asyncio.Task[None]] = []

    async def again(device: Device) -> None:
        for _ in range(20):
            failure = await device.login(use_token)
            if failure is None:
                back.append(time.time() - started)
                talking.append(asyncio.create_task(device.speak(talk_until)))
                return
            failures[failure] = failures.get(failure, 0) + 1
            await asyncio.sleep(random.uniform(0.5, 1.5))

    await asyncio.gather(*(again(d) for d in devices))
    return {"back": back, "failures": failures}, talking


def own_gc_pauses() -> bytes:
    """This process's collections so far, in the server's exposition format (the
    load process installs the server's collector policy and pause counter)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from edgefleet.controller.gc_policy import GcPauses

    registry = CollectorRegistry()
    registry.register(GcPauses())
    return generate_latest(registry)


async def load_main(plan: dict[str, Any]) -> dict[str, Any]:
    raise_fd_limit()
    url = plan["url"]
    devices = [
        Device(device_id, f"127.0.0.{2 + (i % 50)}", url)
        for i, device_id in enumerate(plan["device_ids"])
    ]
    report: dict[str, Any] = {}
    report["login"], talking = await storm(devices, False, plan["login_at"], plan["token_storm_at"])
    await asyncio.sleep(max(0.0, plan["steady_at"] - time.time()))
    for d in devices:
        d.record = True
    pauses_at_start = own_gc_pauses()
    await asyncio.sleep(max(0.0, plan["steady_until"] - time.time()))
    pauses_at_end = own_gc_pauses()
    for d in devices:
        d.record = False
    report["rtts"] = [r for d in devices for r in d.rtts]
    report["gc_during_steady"] = pauses_between(pauses_at_start, pauses_at_end)
    await asyncio.gather(*talking)
    for d in devices:
        await d.drop()
    report["token_storm"], talking = await storm(
        devices, True, plan["token_storm_at"], plan["password_storm_at"] - 1
    )
    await asyncio.gather(*talking)
    for d in devices:
        await d.drop()
    report["password_storm"], talking = await storm(
        devices, False, plan["password_storm_at"], plan["password_storm_at"] + 5
    )
    await asyncio.gather(*talking)
    for d in devices:
        await d.drop()
    return report


# --- the parent ---------------------------------------------------------------------


async def seed(url: str, count: int, rounds: int, pepper: str | None = None) -> list[int]:
    """Devices in bulk, one bcrypt hash shared by all (hashing 10,000 at cost 12 would
    take 40 minutes). With ``pepper``, each row also holds the verified digest its
    device's first login ever left, as in a fleet that has logged in before."""
    import bcrypt
    from sqlalchemy import insert

    from edgefleet.controller.ids import SnowflakeGenerator
    from edgefleet.controller.store import Store
    from edgefleet.controller.store.database import utcnow
    from edgefleet.controller.store.schema import devices
    from edgefleet.southbound.credentials import verified_digest

    store = Store.from_url(url, timeout=60)
    await store.migrate()
    ids = SnowflakeGenerator(worker_id=9)
    secret = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds)).decode()
    now = utcnow()
    device_ids = [ids.next_id() for _ in range(count)]

    def digest(device_id: int) -> str:
        assert pepper is not None
        return verified_digest(pepper.encode(), device_id, 1, PASSWORD.encode())

    for start in range(0, count, 5000):
        async with store.db.begin() as connection:
            await connection.execute(
                insert(devices),
                [
                    {
                        "device_id": d,
                        "name": f"sim {n}",
                        "type": "camera",
                        "description": "",
                        "hardware_sn": f"SIM{n:07d}",
                        "hardware_model": "Sim",
                        "secret": secret,
                        "credential_version": 1,
                        "verified_digest": digest(d) if pepper else None,
                        "state": "offline",
                        "disabled": False,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for n, d in enumerate(device_ids[start : start + 5000], start)
                ],
            )
    await store.close()
    return device_ids


def rss_kib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


async def measure_steady(
    api: str,
    metrics_port: int,
    ids: list[int],
    until: float,
    command_rate: float,
    scrape_interval: float,
) -> dict[str, Any]:
    import aiohttp

    metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    commands: list[tuple[float, float]] = []  # (sent, seconds)
    failures: dict[str, int] = {}
    scraper = start_scraper(metrics, until, scrape_interval)
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(metrics) as response:
            first_scrape = await response.read()

        async def one_command() -> None:
            device_id = random.choice(ids)
            sent = time.monotonic()
            async with session.post(
                f"{api}/api/v1/devices/{device_id}/commands", json={"order": "snapshot"}
            ) as response:
                body = await response.json()
            if response.status == 200 and body["data"]["status"] == "success":
                commands.append((sent, time.monotonic() - sent))
            else:
                key = body.get("type", str(response.status))
                failures[key] = failures.get(key, 0) + 1

        tasks = []
        while time.time() < until:
            tasks.append(asyncio.create_task(one_command()))
            await asyncio.sleep(1 / command_rate)
        await asyncio.gather(*tasks)
        async with session.get(metrics) as response:
            body = await response.read()
        counts = fleet_counts(body.decode())
    assert scraper.stdout is not None
    scraped = json.loads(await asyncio.to_thread(scraper.stdout.read))
    scrapes = scraped["spans"]
    return {
        "server_counts_after_steady": counts,
        # Each holds the server's event loop: the usual cause of a tail of hundreds of ms.
        "server_gc_during_steady": pauses_between(first_scrape, body),
        "command_round_trip": percentiles([seconds for _, seconds in commands]),
        # Which of the tail the scrapes cause: commands in flight while the server
        # rendered /metrics, and the others.
        "command_round_trip_during_scrape": percentiles(
            [seconds for sent, seconds in commands if overlaps(sent, seconds, scrapes)]
        ),
        "command_round_trip_between_scrapes": percentiles(
            [seconds for sent, seconds in commands if not overlaps(sent, seconds, scrapes)]
        ),
        "command_failures": failures,
        "metrics_scrape": percentiles([ended - began for began, ended in scrapes]),
        "metrics_bytes": scraped["bytes"],
    }


def start_scraper(url: str, until: float, interval: float) -> subprocess.Popen[str]:
    """A scraper in a process of its own, as Prometheus is. When the parent
    scraped between two commands, no command was sent while a scrape ran (the
    loop that sent them awaited it), and reading 5 MB shared the loop that timed
    the answers; now commands keep coming during a scrape, as they would."""
    return start_child("--scrape", {"url": url, "until": until, "interval": interval})


def start_child(role: str, plan: dict[str, Any]) -> subprocess.Popen[str]:
    """This script as a child in ``role`` (``--load``, ``--scrape``), given its plan
    on stdin; it prints its report on stdout. Pinned to the load CPU: the server's
    is the server's alone."""
    process = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, __file__, role],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(plan))
    process.stdin.close()
    return process


def scrape_main(plan: dict[str, Any]) -> dict[str, Any]:
    """Scrape every ``interval`` seconds until ``until``: each scrape's span on the
    monotonic clock (the parent's too), and the size of the last."""
    spans: list[tuple[float, float]] = []
    size = 0
    while time.time() < plan["until"]:
        began = time.monotonic()
        with urllib.request.urlopen(plan["url"]) as response:
            size = len(response.read())
        spans.append((began, time.monotonic()))
        time.sleep(plan["interval"])
    return {"spans": spans, "bytes": size}


def overlaps(sent: float, seconds: float, spans: list[tuple[float, float]]) -> bool:
    return any(sent < ended and began < sent + seconds for began, ended in spans)


GC_PAUSE = re.compile(
    rb'edgefleet_gc_pause_seconds_(count|sum|bucket)\{generation="(\d)"(?:,le="([^"]+)")?\} (\S+)'
)


def gc_pauses(scrape: bytes) -> dict[str, dict[str, float]]:
    """The server's collections so far by generation: how many, their seconds, and
    how many held it over 100 ms. Read from the fleet metrics at the head of the
    scrape, without parsing all of it, which would hold the client's loop."""
    found: dict[str, dict[str, float]] = {}
    for kind, generation, bound, value in GC_PAUSE.findall(scrape[:200_000]):
        of = found.setdefault(f"gen{generation.decode()}", {})
        if kind == b"count":
            of["collections"] = float(value)
        elif kind == b"sum":
            of["seconds"] = float(value)
        elif bound == b"0.1":
            of["up_to_100ms"] = float(value)
    return found


def pauses_between(first: bytes, last: bytes) -> dict[str, dict[str, float]]:
    before, after = gc_pauses(first), gc_pauses(last)
    return {
        generation: {
            "collections": int(now["collections"] - then["collections"]),
            "over_100ms": int(
                (now["collections"] - now["up_to_100ms"])
                - (then["collections"] - then["up_to_100ms"])
            ),
            "seconds": round(now["seconds"] - then["seconds"], 3),
        }
        for generation, now in after.items()
        if (then := before.get(generation))
    }


def fleet_counts(text: str) -> dict[str, dict[str, float]]:
    """Logins by result and disconnects by cause, from a scrape: what went wrong."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {"edgefleet_logins": "result", "edgefleet_disconnects": "cause"}
    counts: dict[str, dict[str, float]] = {name: {} for name in wanted}
    for family in text_string_to_metric_families(text):
        if family.name in wanted:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[family.name][sample.labels[wanted[family.name]]] = sample.value
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--steady", type=float, default=60, help="seconds of steady state")
    parser.add_argument(
        "--phase-gap", type=float, default=60, help="seconds for logins, and between storms"
    )
    parser.add_argument(
        "--scrape-interval", type=float, default=5.0, help="seconds between /metrics scrapes"
    )
    parser.add_argument("--command-rate", type=float, default=20, help="REST commands a second")
    parser.add_argument("--bcrypt-rounds", type=int, default=12)
    parser.add_argument("--api-port", type=int, default=18180)
    parser.add_argument("--ws-port", type=int, default=19190)
    parser.add_argument("--metrics-port", type=int, default=19192)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/southbound_load.json")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scrape", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(run_load_process(load_main(json.load(sys.stdin)))))
        return
    if args.scrape:
        print(json.dumps(scrape_main(json.load(sys.stdin))))
        return

    raise_fd_limit()
    url = recreate_database(DATABASE)
    ids = asyncio.run(seed(url, args.devices, args.bcrypt_rounds, PEPPER))
    api = f"http://127.0.0.1:{args.api_port}"
    server = start_server(
        url, args.api_port, "WARNING",
        ("--ws-port", str(args.ws_port), "--metrics-port", str(args.metrics_port),
         "--bcrypt-rounds", str(args.bcrypt_rounds), "--password-pepper", PEPPER,
         "--login-attempts-per-device", "1000"),
        log=args.output.with_suffix(".server.log"),
    )  # fmt: skip
    try:
        idle_rss = rss_kib(server.pid)
        t0 = time.time() + 3
        gap = args.phase_gap
        plan_times = {
            "login_at": t0,
            "steady_at": t0 + gap,
            "steady_until": t0 + gap + args.steady,
            "token_storm_at": t0 + gap + args.steady + 10,
            "password_storm_at": t0 + 2 * gap + args.steady + 10,
        }
        loads = []
        share = (len(ids) + args.load_processes - 1) // args.load_processes
        for n in range(args.load_processes):
            plan = {
                "url": f"ws://127.0.0.1:{args.ws_port}/ws",
                "device_ids": [str(i) for i in ids[n * share : (n + 1) * share]],
                **plan_times,
            }
            loads.append(start_child("--load", plan))
        cpu = CpuSampler({"server": [server.pid], "load": [p.pid for p in loads],
                           "mariadb": CpuSampler.mariadb()})  # fmt: skip
        time.sleep(max(0.0, plan_times["steady_at"] - time.time()))
        held = json.load(
            urllib.request.urlopen(
                urllib.request.Request(
                    f"{api}/api/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"}
                )
            )
        )["data"]
        steady = asyncio.run(
            measure_steady(
                api,
                args.metrics_port,
                ids,
                plan_times["steady_until"],
                args.command_rate,
                args.scrape_interval,
            )
        )
        steady_rss = rss_kib(server.pid)
        outputs = [json.loads(p.stdout.read()) for p in loads if p.stdout]
        cpu.stop()
    finally:
        server.terminate()
        server.wait(60)

    def merged(phase: str, at: float) -> dict[str, Any]:
        back = [b for o in outputs for b in o[phase]["back"]]
        return {
            "devices_back": len(back),
            "seconds_to_last": round(max(back), 2) if back else None,
            "seconds_to_half": round(sorted(back)[len(back) // 2], 2) if back else None,
            # Share of a core each side used until the last device was back: the
            # one near 1.0 is what bounds the storm on this machine.
            "cores_busy": cpu.busy(at, at + max(back)) if back else {},
            "failed_attempts": {
                reason: sum(o[phase]["failures"].get(reason, 0) for o in outputs)
                for reason in {r for o in outputs for r in o[phase]["failures"]}
            },
        }

    devices_held = held["connected"]
    report = {
        "benchmark": "southbound_load",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "server_cpu": 0, "load_cpu": 1},
        "devices": args.devices,
        "devices_held": devices_held,
        "bcrypt_rounds": args.bcrypt_rounds,
        "server_rss_mib": {
            "idle": round(idle_rss / 1024, 1),
            "steady": round(steady_rss / 1024, 1),
        },
        "rss_per_device_kib": round((steady_rss - idle_rss) / max(1, devices_held), 1),
        "pong_round_trip": percentiles([r for o in outputs for r in o["rtts"]]),
        # A load process's pause delays all of its devices' pongs and answers.
        "load_gc_during_steady": [o["gc_during_steady"] for o in outputs],
        **steady,
        "login_storm_passwords": merged("login", plan_times["login_at"]),
        "reconnect_storm_tokens": merged("token_storm", plan_times["token_storm_at"]),
        "reconnect_storm_passwords": merged("password_storm", plan_times["password_storm_at"]),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
