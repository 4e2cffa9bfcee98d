"""Jobs: a command rolled out to a whole fleet, and an update job to 200 devices.

    python bench/jobs.py [--devices 10000] [--update-devices 200] [--mib 20]
    taskset -c 1 python bench/jobs.py --devices 300 --update-devices 20 --mib 1 \\
        --server-cpu 1 --load-cpu 1 --rate 600 --increase-after 100   # a smoke run

1. Recreates the MariaDB database ``edgefleet_jobs_bench``, seeds the devices
   (``southbound_load.seed``, logins of a fleet that logged in before), starts
   ``edgefleet serve`` pinned to ``--server-cpu`` and uploads a ``--mib`` MiB
   artifact of random bytes.
2. ``--load-processes`` load processes pinned to ``--load-cpu`` log every device in
   over real sockets. Each pings at the protocol's cadence and answers a command
   at once with success; the first ``--update-devices`` list the ``update``
   extension and, sent ``update``, download the artifact from the device port
   (HTTP Basic, as the agent does), check its SHA-256 and answer with the new
   version.
3. Command job: ``snapshot`` to every device, at ``--rate`` a minute rising
   ``--increase-factor`` times every ``--increase-after`` successes. The parent
   polls the job every ``--poll`` seconds until it finishes: time to complete,
   the server's CPU seconds over the job (psutil; the scheduler runs in that
   process, with the sessions that deliver the commands), and the admission rate
   measured between polls against the rate the job said it was at.
4. Update job: the artifact to the update devices, all admitted at once. Time to
   complete, the bytes sent (the southbound's
   ``edgefleet_artifact_download_bytes_total``), throughput, and the server's
   resident memory sampled every 50 ms, against one copy of the artifact per
   device.
5. Prints a summary and writes ``bench/results/jobs.json``.

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.config_push import call  # noqa: E402
from bench.harness import TOKEN, recreate_database, run_load_process, start_server  # noqa: E402
from bench.southbound_load import (  # noqa: E402
    PASSWORD,
    PEPPER,
    Device,
    raise_fd_limit,
    rss_kib,
    seed,
    storm,
)

DATABASE = "edgefleet_jobs_bench"
VERSION = "2.1.0"
CHUNK = 256 * 1024


# --- the load process -------------------------------------------------------------------


class UpdatingDevice(Device):
    """A device that lists ``update``: sent one, it downloads the artifact, checks it
    and answers with the new version, as the agent does (without installing)."""

    def __init__(self, device_id: str, source: str, url: str, http: str) -> None:
        super().__init__(device_id, source, url)
        self.extensions = ["request_id", "update"]
        self.http = http
        self._working: set[asyncio.Task[None]] = set()

    async def on_order(self, frame: dict[str, Any]) -> None:
        if frame["Headers"].get("order_type") != "update":
            await super().on_order(frame)
            return
        task = asyncio.create_task(self._update(frame))  # pings go on meanwhile
        self._working.add(task)
        task.add_done_callback(self._working.discard)

    async def _update(self, frame: dict[str, Any]) -> None:
        import aiohttp

        from edgefleet.agent import protocol

        artifact = frame["data"]["artifact"]
        auth = base64.b64encode(f"{self.device_id}:{PASSWORD}".encode()).decode()
        hasher = hashlib.sha256()
        timeout = aiohttp.ClientTimeout(total=600)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(
                self.http + artifact["url"], headers={"Authorization": f"Basic {auth}"}
            ) as answer,
        ):
            async for chunk in answer.content.iter_chunked(CHUNK):
                hasher.update(chunk)
        request_id = frame["Headers"].get("request_id")
        if hasher.hexdigest() == artifact["sha256"]:
            status, message, data = "success", "installed", {"version": VERSION}
        else:
            status, message, data = "fail", "artifact refused", None
        await self.ws.send(protocol.command_result(status, message, data, request_id))


async def load_main(plan: dict[str, Any]) -> dict[str, Any]:
    raise_fd_limit()
    updating = set(plan["update_ids"])
    devices = [
        UpdatingDevice(device_id, f"127.0.0.{2 + (i % 50)}", plan["url"], plan["http"])
        if device_id in updating
        else Device(device_id, f"127.0.0.{2 + (i % 50)}", plan["url"])
        for i, device_id in enumerate(plan["device_ids"])
    ]
    login, talking = await storm(devices, False, time.time(), plan["stop_at"])
    await asyncio.gather(*talking)
    return {"login_failures": login["failures"]}


# --- the parent -------------------------------------------------------------------------


def connected(api: str) -> int:
    return int(call(api, "GET", "/stats")["connected"])


def upload(api: str, mib: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile() as package:
        package.write(os.urandom(mib * 1024 * 1024))
        package.flush()
        package.seek(0)
        request = urllib.request.Request(
            f"{api}/api/v1/artifacts?name=detector&version={VERSION}",
            method="POST",
            data=package,
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "Content-Type": "application/octet-stream",
                "Content-Length": str(mib * 1024 * 1024),
            },
        )
        with urllib.request.urlopen(request, timeout=600) as answer:
            artifact: dict[str, Any] = json.load(answer)["data"]
            return artifact


def run_job(api: str, body: dict[str, Any], poll: float) -> tuple[dict[str, Any], list[dict], int]:
    """Start the job and poll it until it ends: (the last answer, the samples, the
    polls the API refused with 503 — a figure of the run, not a reason to end it)."""
    job = call(api, "POST", "/jobs", body)
    job_id = job["job_id"]
    started = time.perf_counter()
    samples = []
    refused = 0
    while True:
        try:
            job = call(api, "GET", f"/jobs/{job_id}")
        except urllib.error.HTTPError as error:
            if error.code != 503:
                raise
            refused += 1
            time.sleep(poll)
            continue
        counts = job["counts"]
        samples.append(
            {
                "t": round(time.perf_counter() - started, 2),
                "admitted": sum(counts.values()) - counts["pending"],
                "succeeded": counts["succeeded"],
                "rate": job["rate"],
            }
        )
        if job["state"] not in ("running", "paused"):
            return job, samples, refused
        time.sleep(poll)


def measured_rates(samples: list[dict[str, Any]], window: float) -> list[dict[str, Any]]:
    """Over windows of about ``window`` seconds while devices were still being
    admitted: devices admitted a minute, against the rate the job said it was at
    when the window began (the scheduler admits once a tick, so a window spans a
    few ticks)."""
    total = samples[-1]["admitted"]
    rates = []
    begin = samples[0]
    for after in samples[1:]:
        seconds = after["t"] - begin["t"]
        if seconds < window and after is not samples[-1]:
            continue
        if begin["admitted"] < total:
            rates.append(
                {
                    "from_s": begin["t"],
                    "to_s": after["t"],
                    "configured_per_min": round(begin["rate"]),
                    "measured_per_min": round(
                        (after["admitted"] - begin["admitted"]) * 60 / seconds
                    ),
                }
            )
        begin = after
    return rates


def admission_seconds(samples: list[dict[str, Any]]) -> float:
    """When the last device was admitted (the first poll that saw it)."""
    total = samples[-1]["admitted"]
    return float(next(s["t"] for s in samples if s["admitted"] == total))


def bytes_sent(metrics_port: int) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as page:
        text = page.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "edgefleet_artifact_download_bytes":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    return 0.0


class RssSampler:
    """The server's resident memory every 50 ms, in a thread, while in the block."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            self._stop.wait(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--update-devices", type=int, default=200)
    parser.add_argument("--mib", type=int, default=20, help="artifact size")
    parser.add_argument("--rate", type=float, default=6000, help="devices a minute at first")
    parser.add_argument("--increase-factor", type=float, default=2.0)
    parser.add_argument("--increase-after", type=int, default=1000)
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between job polls")
    parser.add_argument(
        "--window", type=float, default=10, help="seconds over which the rate is measured"
    )
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--bcrypt-rounds", type=int, default=12)
    parser.add_argument("--api-port", type=int, default=18280)
    parser.add_argument("--ws-port", type=int, default=19290)
    parser.add_argument("--metrics-port", type=int, default=19292)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/jobs.json")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(run_load_process(load_main(json.load(sys.stdin)))))
        return

    import psutil

    raise_fd_limit()
    url = recreate_database(DATABASE)
    ids = asyncio.run(seed(url, args.devices, args.bcrypt_rounds, PEPPER))
    update_ids = ids[: args.update_devices]
    api = f"http://127.0.0.1:{args.api_port}"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    server = start_server(
        url, args.api_port, "WARNING",
        ("--ws-port", str(args.ws_port), "--metrics-port", str(args.metrics_port),
         "--bcrypt-rounds", str(args.bcrypt_rounds), "--password-pepper", PEPPER,
         "--files-dir", tempfile.mkdtemp(prefix="edgefleet-jobs-bench-"),
         "--login-attempts-per-device", "1000"),
        cpu=args.server_cpu,
        # Its warnings (a database timeout, say) explain a failed run.
        log=args.output.with_suffix(".server.log"),
    )  # fmt: skip
    loads: list[subprocess.Popen[str]] = []
    try:
        artifact = upload(api, args.mib)
        share = (len(ids) + args.load_processes - 1) // args.load_processes
        for n in range(args.load_processes):
            plan = {
                "url": f"ws://127.0.0.1:{args.ws_port}/ws",
                "http": f"http://127.0.0.1:{args.ws_port}",
                "device_ids": [str(i) for i in ids[n * share : (n + 1) * share]],
                "update_ids": [str(i) for i in update_ids],
                "stop_at": time.time() + 3600,
            }
            process = subprocess.Popen(
                ["taskset", "-c", str(args.load_cpu), sys.executable, __file__, "--load"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
            )
            assert process.stdin is not None
            process.stdin.write(json.dumps(plan))
            process.stdin.close()
            loads.append(process)
        login_started = time.perf_counter()
        while connected(api) < args.devices:
            if time.perf_counter() - login_started > 600:
                raise RuntimeError(f"only {connected(api)} of {args.devices} devices logged in")
            time.sleep(1)
        logged_in = time.perf_counter() - login_started

        serving = psutil.Process(server.pid)
        cpu_before = sum(serving.cpu_times()[:2])
        started = time.perf_counter()
        command_job, samples, command_refused = run_job(
            api,
            {
                "name": "bench-snapshot",
                "target": {"device_ids": [str(i) for i in ids]},
                "action": {"command": {"order": "snapshot", "params": {}}},
                "rollout": {
                    "max_per_minute": args.rate,
                    "increase_factor": args.increase_factor,
                    "increase_after": args.increase_after,
                },
                "device_timeout": 60,
            },
            args.poll,
        )
        command_seconds = time.perf_counter() - started
        command_cpu = sum(serving.cpu_times()[:2]) - cpu_before

        idle_rss = rss_kib(server.pid)
        bytes_before = bytes_sent(args.metrics_port)
        started = time.perf_counter()
        with RssSampler(server.pid) as rss:
            update_job, _, update_refused = run_job(
                api,
                {
                    "name": "bench-update",
                    "target": {"device_ids": [str(i) for i in update_ids]},
                    "action": {"update": {"artifact_id": artifact["artifact_id"]}},
                    "rollout": {"max_per_minute": max(60.0, 60.0 * len(update_ids))},
                    "device_timeout": 300,
                },
                0.2,
            )
        update_seconds = time.perf_counter() - started
        sent = bytes_sent(args.metrics_port) - bytes_before
    finally:
        for process in loads:
            process.terminate()
            process.wait(30)
        server.terminate()
        server.wait(60)

    rates = measured_rates(samples, args.window)
    admitted_in = admission_seconds(samples)
    report = {
        "benchmark": "jobs",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "server_cpu": args.server_cpu,
            "load_cpu": args.load_cpu,
        },
        "devices": args.devices,
        "seconds_to_log_in": round(logged_in, 1),
        "command_job": {
            "rollout": {
                "max_per_minute": args.rate,
                "increase_factor": args.increase_factor,
                "increase_after": args.increase_after,
            },
            "state": command_job["state"],
            "counts": command_job["counts"],
            "seconds_to_complete": round(command_seconds, 1),
            "server_cpu_seconds": round(command_cpu, 1),
            "server_cpu_percent": round(100 * command_cpu / command_seconds, 1),
            "final_rate_per_min": round(command_job["rate"]),
            "seconds_to_admit_all": round(admitted_in, 1),
            "admission_rate": rates,
            "polls_refused_503": command_refused,
        },
        "update_job": {
            "devices": len(update_ids),
            "artifact_mib": args.mib,
            "state": update_job["state"],
            "counts": update_job["counts"],
            "seconds_to_complete": round(update_seconds, 1),
            "mib_sent": round(sent / 2**20, 1),
            "throughput_mib_per_s": round(sent / 2**20 / update_seconds, 1),
            "polls_refused_503": update_refused,
            "server_rss_mib": {
                "before": round(idle_rss / 1024, 1),
                "peak": round(rss.peak / 1024, 1),
                "growth": round((rss.peak - idle_rss) / 1024, 1),
                "one_copy_per_device": args.mib * len(update_ids),
            },
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
