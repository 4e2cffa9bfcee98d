"""A login storm of 10,000 devices against 1, 2 and 4 southbound replicas sharing one
status-write budget: the time until every Device shows its state should not depend
on the replica count, and the Kubernetes API should never see more than the budget.

For each replica count the benchmark seeds a fresh MariaDB database with the
devices, starts the Kubernetes API (kmock, the emulator the tests use, in a child
process on CPU 1 holding one Device per device), starts that many
``edgefleet southbound`` processes in Kubernetes mode on CPU 0 with the budget
(``--kube-status-budget``, by default the setting's default), waits until each
replica has counted the others, then logs every device in at once from this
process (CPU 1), spread evenly over the replicas (passwords at the default bcrypt
cost 12, each device's earlier login remembered, so a login costs one HMAC).
Sampled every second: the Devices that say online, the status PATCHes kmock
received (and the most in any one second, from its request log), and each
replica's share, queue and writes (its /metrics).

    python bench/status_storm.py                       # 10,000 devices; 1, 2, 4 replicas
    python bench/status_storm.py --devices 60 --replicas 1,2 --max-seconds 20   # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import collections
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
from bench.southbound_load import PEPPER, Device, raise_fd_limit, seed, storm  # noqa: E402
from edgefleet.controller.settings import KubeSettings  # noqa: E402

DATABASE = "edgefleet_status_bench"
NAMESPACE = "fleet"


async def serve_kmock(work: Path) -> None:
    """Child process: the Devices; every second, the status PATCHes so far, the most
    that arrived within any one second, and how many Devices say online."""
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
        patches, busiest = 0, 0
        window: collections.deque[float] = collections.deque()  # the last second's arrivals
        while True:
            await asyncio.sleep(1)
            served, arrivals = list(emulator.served), list(emulator.arrivals)
            emulator.served.clear()
            emulator.arrivals.clear()
            for request, arrived in sorted(zip(served, arrivals, strict=True), key=lambda x: x[1]):
                if request.subresource != "status":
                    continue
                patches += 1
                window.append(arrived)
                while arrived - window[0] >= 1.0:
                    window.popleft()
                busiest = max(busiest, len(window))
            online = sum(
                1
                for name in names
                if (emulator.objects[DEVICE, NAMESPACE, name].get("status") or {}).get("state")
                == "online"
            )
            stats = work / "kmock-stats.json"
            stats.with_suffix(".tmp").write_text(
                json.dumps({"patches": patches, "busiest_second": busiest, "online": online})
            )
            stats.with_suffix(".tmp").rename(stats)


def scrape(port: int) -> dict[str, float]:
    """A replica's metrics; empty when it did not answer within 5 s (a replica busy
    with a login storm is a figure of the run, not a reason to end it)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:  # timeouts included
        return {}
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f",{k}={v}" for k, v in sorted(sample.labels.items()))
            values[key] = sample.value
    return values


def kmock_stats(work: Path) -> dict[str, Any]:
    path = work / "kmock-stats.json"
    return json.loads(path.read_text()) if path.exists() else {}


async def load(
    args: argparse.Namespace, ids: list[int], replicas: list[dict[str, int]], work: Path
) -> dict[str, Any]:
    urls = [f"ws://127.0.0.1:{r['ws_port']}/ws" for r in replicas]
    devices = [
        Device(str(i), f"127.0.0.{2 + n % 50}", urls[n % len(urls)]) for n, i in enumerate(ids)
    ]
    started = time.time()
    logins = asyncio.create_task(storm(devices, False, started, started + args.max_seconds))
    samples: list[dict[str, Any]] = []
    converged_at = None
    missed_scrapes = 0
    while time.time() - started < args.max_seconds:
        await asyncio.sleep(1)
        answered = [await asyncio.to_thread(scrape, r["metrics_port"]) for r in replicas]
        scrapes = [s for s in answered if s]
        missed_scrapes += len(answered) - len(scrapes)
        seen = kmock_stats(work)
        samples.append(
            {
                "t": round(time.time() - started, 1),
                "sessions": sum(s.get("edgefleet_sessions,state=online", 0) for s in scrapes),
                "shares": [s.get("edgefleet_status_write_share", 0) for s in scrapes],
                "queues": [s.get("edgefleet_status_write_queue", 0) for s in scrapes],
                "writes": sum(s.get("edgefleet_status_writes_total,result=ok", 0) for s in scrapes),
                "patches": seen.get("patches", 0),
                "online": seen.get("online", 0),
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
    elapsed = samples[-1]["t"] if samples else 0
    return {
        "replicas": len(replicas),
        "devices": len(ids),
        "budget": args.budget,
        "logins": {**percentiles(login_report["back"]), "failures": login_report["failures"]},
        "all_online_in_status_s": converged_at,
        "patches": samples[-1]["patches"] if samples else 0,
        "mean_patches_per_second": round(samples[-1]["patches"] / elapsed, 1) if elapsed else 0,
        "busiest_second": kmock_stats(work).get("busiest_second", 0),
        "shares_seen": sorted({share for s in samples for share in s["shares"]}),
        "peak_queue": max((sum(s["queues"]) for s in samples), default=0),
        "missed_scrapes": missed_scrapes,
        "samples": samples,
    }


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def run_replicas(
    args: argparse.Namespace, count: int, url: str, ids: list[int], kubeconfig: Path, work: Path
) -> dict[str, Any]:
    """``count`` southbounds on CPU 0 against the emulated API; the storm from CPU 1."""
    replicas = [
        {"ws_port": args.ws_port + n, "metrics_port": args.metrics_port + n} for n in range(count)
    ]
    processes = []
    for n, r in enumerate(replicas):
        command = [
            "taskset", "-c", "0", sys.executable, "-m", "edgefleet.controller.cli",
            "southbound", "--db-url", url, "--instance", f"southbound-{n}",
            "--ws-port", str(r["ws_port"]), "--metrics-port", str(r["metrics_port"]),
            "--kube-namespace", NAMESPACE, "--kubeconfig", str(kubeconfig),
            "--kube-status-budget", str(args.budget), "--password-pepper", PEPPER,
            "--instance-beat-interval", str(args.beat),
            "--login-attempts-per-device", "1000", "--per-device-metrics", "false",
            "--log-level", "WARNING",
        ]  # fmt: skip
        with (work / f"southbound-{n}.stderr").open("w") as stderr:
            processes.append(subprocess.Popen(command, cwd=ROOT, stderr=stderr))
    try:
        share = args.budget / count
        wait_until(
            lambda: all(
                scrape(r["metrics_port"]).get("edgefleet_status_write_share") == share
                for r in replicas
            ),
            60 + 2 * args.beat,
            f"{count} replicas to count each other",
        )
        os.sched_setaffinity(0, {1})
        return asyncio.run(load(args, ids, replicas, work))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
        for n in range(count):
            if errors := (work / f"southbound-{n}.stderr").read_text().strip():
                print(f"southbound-{n} said:\n{errors}", file=sys.stderr)


def seeded(args: argparse.Namespace) -> tuple[str, list[int]]:
    """A fresh database with the devices, each the Device ``dev-<id>``."""
    import pymysql

    url = recreate_database(DATABASE)
    ids = asyncio.run(seed(url, args.devices, 12, PEPPER))
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
    return url, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--replicas", default="1,2,4", help="replica counts, one run each")
    parser.add_argument(
        "--budget",
        type=float,
        default=KubeSettings().status_budget,
        help="status writes a second for the installation (--kube-status-budget)",
    )
    parser.add_argument("--beat", type=float, default=2.0, help="--instance-beat-interval")
    parser.add_argument("--max-seconds", type=float, default=1200)
    parser.add_argument("--ws-port", type=int, default=19390)
    parser.add_argument("--metrics-port", type=int, default=19590)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/status_storm.json")
    parser.add_argument("--serve-kmock", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_kmock:
        asyncio.run(serve_kmock(args.serve_kmock))
        return
    raise_fd_limit()
    from tests.kube.emulator import write_kubeconfig

    runs = []
    for count in (int(n) for n in args.replicas.split(",")):
        url, ids = seeded(args)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "names.json").write_text(json.dumps([f"dev-{i}" for i in ids]))
            with kmock_child(__file__, work) as server:
                kubeconfig = write_kubeconfig(work / "kubeconfig", server)
                runs.append(run_replicas(args, count, url, ids, kubeconfig, work))
        summary = {k: v for k, v in runs[-1].items() if k != "samples"}
        print(json.dumps(summary, indent=2), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
