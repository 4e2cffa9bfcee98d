"""Desired configuration to a whole group: time until every member reported it.

    python bench/config_push.py [--devices 10000]
    taskset -c 1 python bench/config_push.py --devices 200 --settle 5 --server-cpu 1
                                                  # a smoke run, all on one CPU

1. Recreates the MariaDB database ``edgefleet_config_bench``, seeds the devices
   (``southbound_load.seed``) and puts them all in one group.
2. Starts ``edgefleet serve`` pinned to CPU ``--server-cpu`` (0), and
   ``--load-processes`` load processes pinned to CPU 1: each device lists the
   ``config`` extension, pings every 5 s (round trips recorded) and answers every
   ``config_update`` with a ``config_report`` of what it was sent.
3. Once every device is online and has settled, the parent sets the group's
   configuration (``PUT /api/v1/groups/{id}/config``) and polls the database until
   every member's report names the new version; the devices report when each got
   it, and their heartbeat round trips from that moment until the last report.
4. Queued commands: every device drops its connection; the parent queues one
   command to the whole group (``"queue"``: one per member, 10,000 rows) and the
   devices all come back at once. It polls the database until every command has
   succeeded (the time to drain) and each device counts the commands it was given
   (each exactly once); the report gives the commands' states at the end and the
   login attempts that failed on the way back.
5. Prints a summary and writes ``bench/results/config_push.json`` (the server's log
   beside it, ``config_push.server.log``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import TOKEN, percentiles, recreate_database, run_load_process, start_server  # noqa: E402
from bench.southbound_load import (  # noqa: E402
    PEPPER,
    Device,
    raise_fd_limit,
    seed,
    storm,
)

DATABASE = "edgefleet_config_bench"
GROUP_ID = 1


class ConfigDevice(Device):
    """A device that applies whatever configuration it is sent and reports it."""

    def __init__(self, device_id: str, source: str, url: str) -> None:
        super().__init__(device_id, source, url)
        self.extensions = ["config", "request_id"]
        self.got: dict[int, float] = {}
        """Version -> wall time it arrived."""
        self.orders = 0
        """Commands it was given."""

    async def on_order(self, frame: dict[str, Any]) -> None:
        self.orders += 1
        answer = {
            "type": "upload_instruction_result",
            "Headers": {"request_id": frame["Headers"].get("request_id")},
            "status": "success",
            "data": {},
        }
        await self.ws.send(json.dumps(answer))

    async def on_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("type") != "config_update":
            return
        data = frame["data"]
        self.got[data["version"]] = time.time()
        report = {
            "type": "config_report",
            "Headers": {"request_id": frame["Headers"].get("request_id")},
            "status": "success",
            "data": {"version": data["version"], "reported": data["config"]},
        }
        await self.ws.send(json.dumps(report))


async def load_main(plan: dict[str, Any]) -> dict[str, Any]:
    raise_fd_limit()
    devices = [
        ConfigDevice(device_id, f"127.0.0.{2 + (i % 50)}", plan["url"])
        for i, device_id in enumerate(plan["device_ids"])
    ]
    login, talking = await storm(devices, False, plan["login_at"], plan["stop_at"])
    await asyncio.sleep(max(0.0, plan["change_at"] - time.time()))
    for device in devices:
        device.record = True
    await asyncio.gather(*talking)
    received = [d.got[1] for d in devices if 1 in d.got]
    for device in devices:
        device.record = False
        await device.drop()
    # Back at once, while the queued commands wait for them.
    back, talking = await storm(devices, False, plan["return_at"], plan["end_at"])
    await asyncio.gather(*talking)
    return {
        "login": login,
        "rtts": [r for d in devices for r in d.rtts],
        "received": received,
        "returned": len(back["back"]),
        "return_failures": back["failures"],
        "orders": [d.orders for d in devices],
    }


async def put_members(url: str, device_ids: list[int]) -> None:
    from sqlalchemy import insert

    from edgefleet.controller.store import Store
    from edgefleet.controller.store.database import utcnow
    from edgefleet.controller.store.schema import device_group_members, device_groups

    store = Store.from_url(url, timeout=60)
    now = utcnow()
    async with store.db.begin() as connection:
        await connection.execute(
            insert(device_groups),
            {"group_id": GROUP_ID, "name": "everyone", "description": "",
             "created_at": now, "updated_at": now},
        )  # fmt: skip
        for start in range(0, len(device_ids), 5000):
            await connection.execute(
                insert(device_group_members),
                [
                    {"device_id": d, "group_id": GROUP_ID, "created_at": now}
                    for d in device_ids[start : start + 5000]
                ],
            )
    await store.close()


async def command_states(url: str) -> dict[str, int]:
    """How many commands are in each state."""
    from sqlalchemy import func, select

    from edgefleet.controller.store import Store
    from edgefleet.controller.store.schema import commands

    store = Store.from_url(url, timeout=60)
    try:
        async with store.db.read() as connection:
            query = select(commands.c.state, func.count()).group_by(commands.c.state)
            return {state: int(n) for state, n in (await connection.execute(query)).all()}
    finally:
        await store.close()


async def reported(url: str, version: int) -> int:
    """Members whose last successful report names ``version``."""
    from sqlalchemy import func, select

    from edgefleet.controller.store import Store
    from edgefleet.controller.store.schema import device_configs

    store = Store.from_url(url, timeout=60)
    try:
        async with store.db.read() as connection:
            return int(
                await connection.scalar(
                    select(func.count()).where(
                        device_configs.c.reported_version == version,
                        device_configs.c.report_status == "success",
                    )
                )
                or 0
            )
    finally:
        await store.close()


def summed(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """The load processes' counts, added up."""
    return dict(sum((Counter(c) for c in counts), Counter()))


def call(api: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{api}/api/v1{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)["data"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--settle", type=float, default=60, help="seconds for the logins")
    parser.add_argument("--max-seconds", type=float, default=120, help="give up after this")
    parser.add_argument("--bcrypt-rounds", type=int, default=12)
    parser.add_argument(
        "--server-cpu", type=int, default=0, help="1 for a smoke run beside the load"
    )
    parser.add_argument("--api-port", type=int, default=18280)
    parser.add_argument("--ws-port", type=int, default=19290)
    parser.add_argument("--metrics-port", type=int, default=19292)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/config_push.json")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(run_load_process(load_main(json.load(sys.stdin)))))
        return

    raise_fd_limit()
    url = recreate_database(DATABASE)
    # At the cost users run, each device remembered from an earlier login (one HMAC).
    ids = asyncio.run(seed(url, args.devices, args.bcrypt_rounds, PEPPER))
    asyncio.run(put_members(url, ids))
    api = f"http://127.0.0.1:{args.api_port}"
    server = start_server(
        url, args.api_port, "WARNING",
        ("--ws-port", str(args.ws_port), "--metrics-port", str(args.metrics_port),
         "--bcrypt-rounds", str(args.bcrypt_rounds), "--password-pepper", PEPPER,
         "--login-attempts-per-device", "1000"),
        cpu=args.server_cpu, log=args.output.with_suffix(".server.log"),
    )  # fmt: skip
    try:
        login_at = time.time() + 3
        change_at = login_at + args.settle
        stop_at = change_at + args.max_seconds
        return_at = stop_at + 10
        end_at = return_at + args.max_seconds
        loads = []
        share = (len(ids) + args.load_processes - 1) // args.load_processes
        for n in range(args.load_processes):
            plan = {
                "url": f"ws://127.0.0.1:{args.ws_port}/ws",
                "device_ids": [str(i) for i in ids[n * share : (n + 1) * share]],
                "login_at": login_at,
                "change_at": change_at,
                "stop_at": stop_at,
                "return_at": return_at,
                "end_at": end_at,
            }
            process = subprocess.Popen(
                ["taskset", "-c", "1", sys.executable, __file__, "--load"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert process.stdin is not None
            process.stdin.write(json.dumps(plan))
            process.stdin.close()
            loads.append(process)
        time.sleep(max(0.0, change_at - time.time()))
        online = call(api, "GET", "/stats")["connected"]
        changed = time.time()
        call(api, "PUT", f"/groups/{GROUP_ID}/config", {"config": {"exposure": 30, "fps": 15}})
        answered = time.time() - changed
        all_reported = None
        while time.time() < stop_at:
            if asyncio.run(reported(url, 1)) >= len(ids):
                all_reported = time.time() - changed
                break
            time.sleep(0.5)
        # Queued while every device is away: a session the server has not yet seen
        # close would take its command and lose it with the connection.
        time.sleep(max(0.0, stop_at - time.time()))
        connected = call(api, "GET", "/stats")["connected"]
        while connected and time.time() < return_at - 1:
            time.sleep(0.2)
            connected = call(api, "GET", "/stats")["connected"]
        offline_when_queued = len(ids) - connected
        queued_at = time.time()
        body = {"order": "bench-queued", "params": {}, "queue": {"ttl": 3600}}
        queued = call(api, "POST", f"/groups/{GROUP_ID}/commands", body)
        queue_answered = time.time() - queued_at
        drained = None
        while time.time() < end_at:
            states = asyncio.run(command_states(url))
            if states.get("succeeded", 0) >= len(ids):
                drained = time.time() - return_at
                break
            time.sleep(0.5)
        outputs = [json.loads(p.stdout.read()) for p in loads if p.stdout]
    finally:
        server.terminate()
        server.wait(60)

    received = sorted(t - changed for o in outputs for t in o["received"])
    rtts = [r for o in outputs for r in o["rtts"]]
    report = {
        "devices": len(ids),
        "online_before_change": online,
        "put_answered_seconds": round(answered, 3),
        "all_reported_seconds": None if all_reported is None else round(all_reported, 2),
        "received": len(received),
        "last_received_seconds": round(received[-1], 2) if received else None,
        "median_received_seconds": round(received[len(received) // 2], 2) if received else None,
        "heartbeat_round_trip_during": percentiles(rtts),
        "login_failures": summed(o["login"]["failures"] for o in outputs),
        "queued_commands": {
            "devices_offline_when_queued": offline_when_queued,
            "queued": len(queued["results"]),
            "queue_request_seconds": round(queue_answered, 2),
            "devices_back": sum(o["returned"] for o in outputs),
            "all_succeeded_after_return_seconds": None if drained is None else round(drained, 2),
            "devices_given_it_once": sum(n == 1 for o in outputs for n in o["orders"]),
            "devices_given_it_twice_or_more": sum(n > 1 for o in outputs for n in o["orders"]),
            "command_states_at_end": states,
            "failed_login_attempts_on_return": summed(o["return_failures"] for o in outputs),
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
