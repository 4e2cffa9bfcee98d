"""Prometheus metrics of the southbound.

Fleet counters and histograms are ordinary client-library metrics. Per-device
gauges are not: one labelled child per device per metric would keep tens of
thousands of Python objects alive. They are rendered at scrape time from a
snapshot of the live status, and the whole rendering runs in a worker thread so a
large scrape never stalls the sessions on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from southbound.live import LiveStatusBook

DEVICE_LABELS = ["device_id", "name", "namespace", "type"]


@dataclass(frozen=True)
class DeviceSample:
    device_id: str
    name: str
    namespace: str
    type: str
    up: float
    cpu: float | None
    memory: float | None
    disk: float | None
    last_seen: float


class _DeviceCollector(Collector):
    """Yields the per-device families of one snapshot, then forgets it."""

    def __init__(self) -> None:
        self.snapshot: list[DeviceSample] = []

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "edgefleet_device_up", "1 when online, 0.5 when unknown.", labels=DEVICE_LABELS
        )
        cpu = GaugeMetricFamily(
            "edgefleet_device_cpu_percent",
            "CPU use between the last two uploads.",
            labels=DEVICE_LABELS,
        )
        memory = GaugeMetricFamily(
            "edgefleet_device_memory_used_percent", "Memory in use.", labels=DEVICE_LABELS
        )
        disk = GaugeMetricFamily(
            "edgefleet_device_disk_used_percent", "Root disk in use.", labels=DEVICE_LABELS
        )
        seen = GaugeMetricFamily(
            "edgefleet_device_last_seen_timestamp_seconds",
            "When the device was last heard from.",
            labels=DEVICE_LABELS,
        )
        for s in self.snapshot:
            labels = [s.device_id, s.name, s.namespace, s.type]
            up.add_metric(labels, s.up)
            seen.add_metric(labels, s.last_seen)
            for family, value in ((cpu, s.cpu), (memory, s.memory), (disk, s.disk)):
                if value is not None:
                    family.add_metric(labels, value)
        yield from (up, cpu, memory, disk, seen)


class SouthboundMetrics:
    def __init__(self, per_device: bool) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Counter(
            "edgefleet_connections", "WebSocket connections accepted.", registry=r
        )
        self.sessions = Gauge(
            "edgefleet_sessions", "Logged-in device sessions on this instance.", registry=r
        )
        self.logins = Counter(
            "edgefleet_logins", "Login attempts by result.", ["result"], registry=r
        )
        self.heartbeats = Counter("edgefleet_heartbeats", "Pings answered with a pong.", registry=r)
        self.frame_gap = Histogram(
            "edgefleet_frame_gap_seconds",
            "Time between two frames of a device (the heartbeat round as the cloud sees it).",
            buckets=(0.5, 1, 2.5, 5, 5.5, 7.5, 10, 15, 30),
            registry=r,
        )
        self.statuses = Counter(
            "edgefleet_status_uploads", "Status uploads by outcome.", ["result"], registry=r
        )
        self.bad_frames = Counter(
            "edgefleet_bad_frames", "Frames ignored, by reason.", ["reason"], registry=r
        )
        self.disconnects = Counter(
            "edgefleet_disconnects", "Sessions ended, by cause.", ["cause"], registry=r
        )
        self.commands = Counter(
            "edgefleet_commands",
            "Commands by order kind and result.",
            ["kind", "result"],
            registry=r,
        )
        self.command_latency = Histogram(
            "edgefleet_command_duration_seconds",
            "From sending a command to its result.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self._devices = _DeviceCollector() if per_device else None
        if self._devices:
            r.register(self._devices)
        self._lock = asyncio.Lock()

    async def render(self, book: LiveStatusBook) -> bytes:
        """The exposition text. The snapshot is taken on the loop (a list copy);
        formatting happens in a thread."""
        async with self._lock:  # one render at a time shares the collector
            if self._devices:
                self._devices.snapshot = [
                    DeviceSample(
                        str(e.device_id),
                        *e.labels,
                        up=1.0 if e.state == "online" else 0.5,
                        cpu=e.cpu_percent,
                        memory=e.memory_used_percent,
                        disk=e.disk_used_percent,
                        last_seen=e.last_seen,
                    )
                    for e in list(book.entries.values())
                ]
            try:
                return await asyncio.to_thread(generate_latest, self.registry)
            finally:
                if self._devices:
                    self._devices.snapshot = []
