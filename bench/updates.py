"""Software-update downloads: many devices fetching one artifact at once.

    python bench/updates.py [--devices 200] [--mib 20]

1. Recreates the MariaDB database ``edgefleet_updates_bench``, seeds the devices
   and starts ``edgefleet serve`` pinned to CPU 0, its files in a temporary folder.
2. Uploads a ``--mib`` MiB artifact of random bytes (``POST /api/v1/artifacts``,
   streamed from disk) and times it.
3. A load process on CPU 1 has every device download it at once from the device
   port (``GET /files/{sha256}``, HTTP Basic, as the agent does), reading and
   counting every byte; the first device also hashes what it got.
4. Meanwhile the server's resident memory (``/proc/<pid>/status``) is sampled
   every 50 ms, and its CPU time read before and after.
5. Prints a summary and writes ``bench/results/updates.json``: throughput, the
   downloads' latency, the server's CPU seconds and its memory growth against
   what holding the artifact once per device would take.

Not part of the test suite; smoke it with ``--devices 5 --mib 1``.
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
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import TOKEN, percentiles, recreate_database, run_load_process, start_server  # noqa: E402
from bench.southbound_load import PASSWORD, raise_fd_limit, seed  # noqa: E402

DATABASE = "edgefleet_updates_bench"
CHUNK = 256 * 1024


# --- the load process -------------------------------------------------------------------


async def download(
    port: int, device_id: str, path: str, digest: bool
) -> tuple[float, int, str | None]:
    """One device's whole download: (seconds, bytes, SHA-256 if asked)."""
    import aiohttp

    auth = base64.b64encode(f"{device_id}:{PASSWORD}".encode()).decode()
    started = time.perf_counter()
    hasher = hashlib.sha256() if digest else None
    received = 0
    timeout = aiohttp.ClientTimeout(total=600)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(
            f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Basic {auth}"}
        ) as answer,
    ):
        if answer.status != 200:
            raise RuntimeError(f"HTTP {answer.status}: {await answer.text()}")
        async for chunk in answer.content.iter_chunked(CHUNK):
            received += len(chunk)
            if hasher is not None:
                hasher.update(chunk)
    return time.perf_counter() - started, received, hasher.hexdigest() if hasher else None


async def load_main(plan: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            download(plan["port"], device_id, plan["path"], n == 0)
            for n, device_id in enumerate(plan["device_ids"])
        ),
        return_exceptions=True,
    )
    wall = time.perf_counter() - started
    done = [r for r in results if not isinstance(r, BaseException)]
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return {
        "wall_s": wall,
        "seconds": [r[0] for r in done],
        "bytes": sum(r[1] for r in done),
        "sizes": sorted({r[1] for r in done}),
        "first_digest": next((r[2] for r in done if r[2]), None),
        "failed": len(errors),
        "errors": errors[:5],
    }


# --- the server's footprint -------------------------------------------------------------


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MemorySampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(self.interval)


# --- the run ---------------------------------------------------------------------------


def upload(api: str, package: Path) -> dict[str, Any]:
    with package.open("rb") as body:
        request = urllib.request.Request(
            f"{api}/api/v1/artifacts?name=detector&version=2.1.0",
            data=body,
            method="POST",
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "Content-Type": "application/octet-stream",
                "Content-Length": str(package.stat().st_size),
            },
        )
        with urllib.request.urlopen(request, timeout=300) as answer:
            return json.loads(answer.read())["data"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--mib", type=int, default=20)
    parser.add_argument("--bcrypt-rounds", type=int, default=4)
    parser.add_argument("--api-port", type=int, default=18380)
    parser.add_argument("--ws-port", type=int, default=19390)
    parser.add_argument("--metrics-port", type=int, default=19392)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/updates.json")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(run_load_process(load_main(json.load(sys.stdin)))))
        return

    raise_fd_limit()
    url = recreate_database(DATABASE)
    device_ids = asyncio.run(seed(url, args.devices, args.bcrypt_rounds))
    work = Path(tempfile.mkdtemp(prefix="edgefleet-updates-"))
    package = work / "detector.tar"
    with package.open("wb") as out:
        for _ in range(args.mib):
            out.write(os.urandom(1024 * 1024))
    server = start_server(
        url, args.api_port, "WARNING",
        ("--ws-port", str(args.ws_port), "--metrics-port", str(args.metrics_port),
         "--bcrypt-rounds", str(args.bcrypt_rounds), "--files-dir", str(work / "files"),
         "--login-attempts-per-device", "100000"),
    )  # fmt: skip
    size = args.mib * 1024 * 1024
    report: dict[str, Any] = {"devices": args.devices, "artifact_mib": args.mib}
    try:
        api = f"http://127.0.0.1:{args.api_port}"
        before_upload = rss_mib(server.pid)
        started = time.perf_counter()
        artifact = upload(api, package)
        upload_s = time.perf_counter() - started
        report["upload"] = {
            "seconds": round(upload_s, 3),
            "mib_s": round(args.mib / upload_s, 1),
            "rss_growth_mib": round(rss_mib(server.pid) - before_upload, 1),
        }
        plan = {"port": args.ws_port, "path": f"/files/{artifact['sha256']}",
                "device_ids": [str(d) for d in device_ids]}  # fmt: skip
        baseline, cpu_before = rss_mib(server.pid), cpu_seconds(server.pid)
        sampler = MemorySampler(server.pid)
        sampler.start()
        load = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, __file__, "--load"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        output, _ = load.communicate(json.dumps(plan), timeout=900)
        sampler.stopped.set()
        sampler.join()
        cpu = cpu_seconds(server.pid) - cpu_before
        outcome = json.loads(output)
        total_mib = outcome["bytes"] / 2**20
        report["downloads"] = {
            "completed": args.devices - outcome["failed"],
            "failed": outcome["failed"],
            "errors": outcome["errors"],
            "whole": outcome["sizes"] == [size],
            "digest_matches": outcome["first_digest"] == artifact["sha256"],
            "wall_s": round(outcome["wall_s"], 3),
            "total_mib": round(total_mib, 1),
            "throughput_mib_s": round(total_mib / outcome["wall_s"], 1),
            "per_download": percentiles(outcome["seconds"]),
        }
        report["server"] = {
            "cpu_s": round(cpu, 2),
            "mib_per_cpu_s": round(total_mib / cpu, 1) if cpu else None,
            "rss_before_mib": round(baseline, 1),
            "rss_peak_mib": round(sampler.peak, 1),
            "rss_growth_mib": round(sampler.peak - baseline, 1),
            "artifact_held_per_device_would_be_mib": args.devices * args.mib,
        }
    finally:
        server.terminate()
        server.wait(30)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    downloads, server_figures = report["downloads"], report["server"]
    per = downloads["per_download"]
    held = server_figures["artifact_held_per_device_would_be_mib"]
    print(
        f"upload: {report['upload']['mib_s']} MiB/s\n"
        f"downloads: {downloads['completed']}/{args.devices} of {args.mib} MiB in "
        f"{downloads['wall_s']} s, {downloads['throughput_mib_s']} MiB/s; each p50 "
        f"{per.get('p50_ms')} ms, p99 {per.get('p99_ms')} ms; whole {downloads['whole']}, "
        f"digest {downloads['digest_matches']}\n"
        f"server: {server_figures['cpu_s']} CPU s ({server_figures['mib_per_cpu_s']} MiB per "
        f"CPU s); RSS {server_figures['rss_before_mib']} -> peak "
        f"{server_figures['rss_peak_mib']} MiB (+{server_figures['rss_growth_mib']}; holding "
        f"the artifact per device would take {held} MiB)"
    )
    print(f"report: {args.output}")


if __name__ == "__main__":
    main()
