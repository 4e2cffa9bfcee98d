"""What the benchmarks here share: a fresh MariaDB database, latency summaries."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MARIADB = "root@127.0.0.1:3306"
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
