"""A login storm of 10,000 devices with the status writer on: bounded, paced writes.

Every device of a southbound logging in at once is 10,000 state changes for the
Kubernetes API. The writer must turn them into at most one write per device,
never more than ``--rate`` a second, and get every Device to ``online``. The
Kubernetes API is kmock (the emulator the tests use) in a child process holding
the 10,000 Devices; the southbound runs as ``edgefleet southbound`` on CPU 0 with
MariaDB; the devices log in from this process. Sampled every second: the writer's
queue depth and writes (its /metrics), the PATCHes kmock received, and how many
Devices say online.

    python bench/status_storm.py --devices 10000 --rate 100
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    MARIADB,
    kmock_child,
    percentiles,
    publish_kmock_url,
    recreate_database,
)
from bench.southbound_load import Device, raise_fd_limit, seed, storm  # noqa: E402

DATABASE = "edgefleet_status_bench"
NAMESPACE = "fleet"


async def serve_kmock(work: Path) -> None:
    """Child process: the Devices, and their statuses counted every second."""
    import kmock

    from tests.kube.emulator import DEVICE, StampingEmulator, declare_resources

    names = json.loads((work / "names.json").read_text())
    async with StampingEmulator() as emulator, kmock.Server(emulator):
        declare_resources(emulator)
        for name in names:
            emulator.objects[DEVICE, NAMESPACE, name] = {
                "apiVersion": "edgefleet.io/v1alpha1",
                "kind": "Device",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"hardware": {"sn": name, "model": "M"}},
            }
        publish_kmock_url(work, str(emulator.url))
        patches = 0
        while True:
            await asyncio.sleep(1)
            patches += sum(1 for r in emulator.served if r.subresource == "status")
            emulator.served.clear()
            online = sum(
                1
                for name in names
                if (emulator.objects[DEVICE, NAMESPACE, name].get("status") or {}).get("state")
                == "online"
            )
            stats = work / "kmock-stats.json"
            stats.with_suffix(".tmp").write_text(json.dumps({"patches": patches, "online": online}))
            stats.with_suffix(".tmp").rename(stats)


def scrape(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f",{k}={v}" for k, v in sorted(sample.labels.items()))
            values[key] = sample.value
    return values


async def load(args: argparse.Namespace, ids: list[int], ws_port: int, work: Path) -> dict:
    url = f"ws://127.0.0.1:{ws_port}/ws"
    devices = [Device(str(i), f"127.0.0.{2 + n % 50}", url) for n, i in enumerate(ids)]
    started = time.time()
    logins = asyncio.create_task(storm(devices, False, started, started + args.max_seconds))
    samples: list[dict[str, Any]] = []
    converged_at = None
    while time.time() - started < args.max_seconds:
        await asyncio.sleep(1)
        metrics = await asyncio.to_thread(scrape, args.metrics_port)
        stats_file = work / "kmock-stats.json"
        kmock_stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        samples.append(
            {
                "t": round(time.time() - started, 1),
                "sessions": metrics.get("edgefleet_sessions", 0),
                "queue": metrics.get("edgefleet_status_write_queue", 0),
                "writes": metrics.get("edgefleet_status_writes_total,result=ok", 0),
                "patches": kmock_stats.get("patches", 0),
                "online": kmock_stats.get("online", 0),
            }
        )
        if samples[-1]["online"] >= len(ids):
            converged_at = samples[-1]["t"]
            break
    login_report, talking = await logins
    for task in talking:
        task.cancel()
    for device in devices:
        await device.drop()
    per_second = [
        (b["writes"] - a["writes"]) / (b["t"] - a["t"])
        for a, b in itertools.pairwise(samples)
        if b["t"] > a["t"]
    ]
    return {
        "devices": len(ids),
        "rate_cap": args.rate,
        "logins": {
            **percentiles(login_report["back"]),
            "failures": login_report["failures"],
        },
        "all_online_in_status_s": converged_at,
        "peak_queue": max(s["queue"] for s in samples),
        "writes": samples[-1]["writes"],
        "patches_received": samples[-1]["patches"],
        "max_writes_per_second": round(max(per_second, default=0), 1),
        "median_writes_per_second": round(sorted(per_second)[len(per_second) // 2], 1)
        if per_second
        else 0,
        "samples": samples,
    }


def run_against(
    args: argparse.Namespace, url: str, ids: list[int], kubeconfig: Path, work: Path
) -> dict[str, Any]:
    """The southbound on CPU 0 against the emulated API; the storm from CPU 1."""
    southbound = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "edgefleet.controller.cli", "southbound",
         "--db-url", url, "--ws-port", str(args.ws_port), "--instance", "southbound-0",
         "--metrics-port", str(args.metrics_port),
         "--kube-namespace", NAMESPACE, "--kubeconfig", str(kubeconfig),
         "--kube-status-rate", str(args.rate), "--bcrypt-rounds", "4",
         "--login-attempts-per-device", "1000", "--per-device-metrics", "false",
         "--log-level", "WARNING"],
        cwd=ROOT, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{args.ws_port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        os.sched_setaffinity(0, {1})
        return asyncio.run(load(args, ids, args.ws_port, work))
    finally:
        southbound.terminate()
        southbound.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100, help="status writes a second (cap)")
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--ws-port", type=int, default=19390)
    parser.add_argument("--metrics-port", type=int, default=19392)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/status_storm.json")
    parser.add_argument("--serve-kmock", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_kmock:
        asyncio.run(serve_kmock(args.serve_kmock))
        return
    raise_fd_limit()
    url = recreate_database(DATABASE)
    ids = asyncio.run(seed(url, args.devices, 4))
    import pymysql

    user, _, hostport = MARIADB.partition("@")
    host, _, port = hostport.partition(":")
    connection = pymysql.connect(host=host, port=int(port), user=user, database=DATABASE)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE devices SET k8s_name = CONCAT('dev-', device_id), k8s_namespace = %s",
            (NAMESPACE,),
        )
    connection.commit()
    connection.close()

    from tests.kube.emulator import write_kubeconfig

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "names.json").write_text(json.dumps([f"dev-{i}" for i in ids]))
        with kmock_child(__file__, work) as server:
            kubeconfig = write_kubeconfig(work / "kubeconfig", server)
            report = run_against(args, url, ids, kubeconfig, work)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
