"""What the benchmarks here share: a fresh MariaDB database, latency summaries."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MARIADB = "root@127.0.0.1:3306"
TOKEN = "bench-token"
"""The bootstrap API token every benchmark's server is started with."""
ROOT = Path(__file__).resolve().parents[1]
KMOCK_URL = "kmock-url"


def recreate_database(name: str) -> str:
    """Drop and create ``name`` on the local MariaDB; returns its SQLAlchemy URL."""
    import pymysql

    user, _, hostport = MARIADB.partition("@")
    host, _, port = hostport.partition(":")
    connection = pymysql.connect(host=host, port=int(port), user=user)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    connection.close()
    return f"mysql+aiomysql://{MARIADB}/{name}?charset=utf8mb4"


def run_load_process(main: Coroutine[Any, Any, T]) -> T:
    """Run a load process on uvloop, as ``edgefleet serve`` runs. On the stdlib
    loop one core of simulated devices bounded the reconnect storms: during the
    10,000-device token storm the load core was 91 % busy while the server's was
    53 % (``bench/southbound_load.py``), so the figure measured the devices.

    Its cycle collector is tuned as the server's is (``controller/gc_policy.py``):
    a collection stops all of the process's simulated devices at once, something
    real devices, each on its own machine, never do, and with the default
    thresholds those pauses (up to 300 ms with 5,000 devices) showed in the
    latencies measured of the server. The pauses that remain are counted by the
    same ``edgefleet_gc_pause_seconds`` collector the server exports."""
    import uvloop

    from edgefleet.controller import gc_policy

    gc_policy.settle()
    return uvloop.run(main)


def percentiles(seconds: list[float]) -> dict[str, float | int]:
    """Count, p50, p90, p99, max and mean, in milliseconds."""
    if not seconds:
        return {"count": 0}
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {
        "count": len(ordered),
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "max_ms": round(ordered[-1] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


def publish_kmock_url(work: Path, url: str) -> None:
    """In the kmock child: tell the parent where the API listens (atomically)."""
    partial = work / (KMOCK_URL + ".partial")
    partial.write_text(url)
    partial.rename(work / KMOCK_URL)


@contextmanager
def kmock_child(script: str, work: Path) -> Iterator[str]:
    """``script --serve-kmock work`` on CPU 1 — the emulated Kubernetes API, which
    calls ``publish_kmock_url`` — for the duration of the block; yields its URL."""
    child = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, script, "--serve-kmock", str(work)], cwd=ROOT
    )
    try:
        while not (work / KMOCK_URL).exists():
            if child.poll() is not None:
                raise RuntimeError("the kmock child exited before it listened")
            time.sleep(0.1)
        yield (work / KMOCK_URL).read_text()
    finally:
        child.kill()
        child.wait()


class CountingRelay:
    """A TCP relay that counts the bytes and the reads (about one a segment) going
    up (device to cloud) and down, and can go silent like a dead 4G link."""

    def __init__(self, target_port: int) -> None:
        import asyncio

        self.target_port = target_port
        self.port = 0
        self.bytes = {"up": 0, "down": 0}
        self.reads = {"up": 0, "down": 0}
        self.connections = 0
        self._dialled = asyncio.Condition()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> None:
        import asyncio

        server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        """Pass nothing more, keep every connection open: packets dropped, not refused."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def dialled(self, times: int) -> None:
        """Wait until ``times`` connections have been made through the relay."""
        async with self._dialled:
            await self._dialled.wait_for(lambda: self.connections >= times)

    async def _relay(self, reader, writer) -> None:  # type: ignore[no-untyped-def]
        import asyncio

        async with self._dialled:
            self.connections += 1
            self._dialled.notify_all()
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(
            self._pump(reader, up_writer, "up"),
            self._pump(up_reader, writer, "down"),
            return_exceptions=True,
        )

    async def _pump(self, reader, writer, direction: str) -> None:  # type: ignore[no-untyped-def]
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                self.bytes[direction] += len(data)
                self.reads[direction] += 1
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()  # one side closed: close the other, as a TCP path would


class CpuSampler:
    """CPU seconds used by named groups of processes, and seconds their main
    threads were ready to run but waited for a core (the kernel's run-queue
    delay), sampled four times a second on a thread of the parent, so a phase's
    cost can be read afterwards for any window of wall-clock time. Together they
    say what bounds a phase: a server busy half the time and never waiting was
    limited by its load; one that waited for its core was starved by whatever
    else ran there."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        import psutil

        self._processes = {
            name: [psutil.Process(pid) for pid in pids] for name, pids in groups.items()
        }
        self._samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.25):
            used: dict[str, float] = {}
            for name, processes in self._processes.items():
                total = waited = 0.0
                for process in processes:
                    try:
                        times = process.cpu_times()
                        schedstat = Path(f"/proc/{process.pid}/schedstat").read_text().split()
                    except (psutil.Error, OSError):  # ended: its last sample stands
                        continue
                    total += times.user + times.system
                    waited += int(schedstat[1]) / 1e9
                used[name] = total
                used[f"{name}_waiting"] = waited
            self._samples.append((time.time(), used))

    @staticmethod
    def mariadb() -> list[int]:
        """The local MariaDB server's process, which shares the machine's cores."""
        import psutil

        return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "mariadbd"]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def busy(self, start: float, end: float) -> dict[str, float]:
        """Per group, the share of one core it used between ``start`` and ``end``,
        and (``<group>_waiting``) the share of that time it waited for one."""
        inside = [sample for sample in self._samples if start <= sample[0] <= end]
        if len(inside) < 2:
            return {}
        (t0, first), (t1, last) = inside[0], inside[-1]
        return {name: round((last[name] - first.get(name, 0.0)) / (t1 - t0), 2) for name in last}


def start_server(
    url: str,
    port: int,
    log_level: str,
    extra: tuple[str, ...] = (),
    *,
    cpu: int = 0,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``edgefleet serve`` on ``url``, pinned to ``cpu`` (``extra``: more flags),
    once its API answers; its log goes to ``log`` (none: discarded)."""
    command = [
        *(sys.executable, "-m", "edgefleet.controller.cli", "serve", "--db-url", url),
        *("--api-port", str(port), "--api-token", TOKEN, "--log-level", log_level, *extra),
    ]
    stderr = log.open("w") if log is not None else subprocess.DEVNULL
    server = subprocess.Popen(["taskset", "-c", str(cpu), *command], cwd=ROOT, stderr=stderr)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("server did not start")
