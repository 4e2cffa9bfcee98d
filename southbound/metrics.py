"""Prometheus metrics of the southbound.

Fleet counters and histograms are ordinary client-library metrics. Per-device
gauges are not: one labelled child per device per metric would keep tens of
thousands of Python objects alive. They are rendered at scrape time from a
snapshot of the live status, straight into the text format with each device's
label set escaped once at login, a chunk at a time so a large scrape never holds
the event loop for long.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from edgefleet.southbound.live import LiveEntry, LiveStatusBook

# (name, help) of the per-device gauges, in the order of ``_device_values``.
DEVICE_FAMILIES = (
    ("edgefleet_device_up", "1 when online, 0.5 when unknown."),
    ("edgefleet_device_cpu_percent", "CPU use between the last two status uploads."),
    ("edgefleet_device_memory_used_percent", "Memory in use."),
    ("edgefleet_device_disk_used_percent", "Root disk in use."),
    ("edgefleet_device_last_seen_timestamp_seconds", "When the device was last heard from."),
)


def label_text(device_id: int, name: str, namespace: str, type_: str) -> str:
    """The label set of a device's series, escaped once when it logs in."""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return (
        f'device_id="{device_id}",name="{escape(name)}",'
        f'namespace="{escape(namespace)}",type="{escape(type_)}"'
    )


def _device_values(entry: LiveEntry) -> tuple[str, tuple[float | None, ...]]:
    up = 1.0 if entry.state == "online" else 0.5
    return entry.label_text, (
        up,
        entry.cpu_percent,
        entry.memory_used_percent,
        entry.disk_used_percent,
        entry.last_seen,
    )


# Devices formatted between two yields to the event loop while rendering.
RENDER_CHUNK = 500


async def _render_devices(entries: list[LiveEntry]) -> bytes:
    """The per-device families in the text exposition format, written directly
    (the client library's generic path costs about ten times as much per sample),
    a chunk at a time on the event loop.

    Not in a thread: a thread formatting 50,000 lines holds the GIL for most of
    each switch interval, and the event loop, which wakes thousands of times a
    second, waits up to 5 ms at every wake (measured: pong p99 about 1 s at
    10,000 devices with a scrape every 5 s)."""
    snapshot: list[tuple[str, tuple[float | None, ...]]] = []
    for start in range(0, len(entries), RENDER_CHUNK):
        snapshot.extend(_device_values(e) for e in entries[start : start + RENDER_CHUNK])
        await asyncio.sleep(0)
    text: list[str] = []
    for index, (name, help_text) in enumerate(DEVICE_FAMILIES):
        text.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
        for start in range(0, len(snapshot), RENDER_CHUNK):
            text.extend(
                f"{name}{{{labels}}} {values[index]!r}\n"
                for labels, values in snapshot[start : start + RENDER_CHUNK]
                if values[index] is not None
            )
            await asyncio.sleep(0)
    return "".join(text).encode()


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
        self.status_writes = Counter(
            "edgefleet_status_writes",
            "Device resource status writes (Kubernetes mode), by result.",
            ["result"],
            registry=r,
        )
        self.status_write_queue = Gauge(
            "edgefleet_status_write_queue",
            "Devices whose resource status waits to be written (Kubernetes mode).",
            registry=r,
        )
        self.per_device = per_device

    async def render(self, book: LiveStatusBook) -> bytes:
        """The exposition text: fleet metrics, then the devices of the live status."""
        fleet = generate_latest(self.registry)
        if not self.per_device:
            return fleet
        return fleet + await _render_devices(list(book.entries.values()))
