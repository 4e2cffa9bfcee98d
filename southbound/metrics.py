"""Prometheus metrics of the southbound, a listener of the session events.

Fleet counters and histograms are ordinary client-library metrics, counted as the
events arrive. Per-device gauges are not: one labelled child per device per metric
would keep tens of thousands of Python objects alive. Each device's lines are kept
in the text format instead, as bytes, each rendered when the event that changes it
arrives (``DeviceLines``), so a scrape only joins what is there, a chunk at a time.
Sessions by state are counted from the live status at scrape time, so they cannot
drift from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from edgefleet.agent.protocol import BUILTIN_ORDERS, UPDATE
from edgefleet.controller.gc_policy import GcPauses
from edgefleet.southbound.events import (
    ArtifactDownloadEnded,
    ArtifactDownloadStarted,
    CommandFinished,
    CommandNotSent,
    Connected,
    ConnectionEnded,
    DataIngested,
    FileReceived,
    FrameIgnored,
    FrameReceived,
    HeartbeatAnswered,
    Left,
    LoggedIn,
    LoginFailed,
    PasswordChecked,
    SessionEvents,
    StateChanged,
    StatusReceived,
    StatusRejected,
)
from edgefleet.southbound.live import LiveStatusBook

# A ``_created`` series per counter doubles the series count and says nothing a
# dashboard uses.
disable_created_metrics()


# (name, help) of the per-device gauges, in the order of the exposition.
DEVICE_FAMILIES: tuple[tuple[str, str], ...] = (
    (
        "edgefleet_device_up",
        "1 when online, 0 when unknown (label state); absent when offline.",
    ),
    ("edgefleet_device_cpu_percent", "CPU use between the last two status uploads, percent."),
    ("edgefleet_device_memory_used_percent", "Memory in use, percent."),
    ("edgefleet_device_disk_used_percent", "Root disk in use, percent."),
    ("edgefleet_device_last_seen_timestamp_seconds", "When the device was last heard from."),
)
UP, CPU, MEMORY, DISK, LAST_SEEN = range(len(DEVICE_FAMILIES))


def label_text(device_id: int, name: str, namespace: str, type_: str) -> str:
    """The label set of a device's series, escaped once when it logs in."""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return (
        f'device_id="{device_id}",name="{escape(name)}",'
        f'namespace="{escape(namespace)}",type="{escape(type_)}"'
    )


# Lines joined into one chunk of the response between two yields to the loop.
RENDER_CHUNK = 500


class DeviceLines:
    """The per-device families in the text exposition format (written directly: the
    client library's generic path costs about ten times as much per sample), one
    rendered line per device and family, replaced when an event changes it.

    Rendering at scrape time instead formatted 50,000 lines at 10,000 devices:
    about 85 ms of the loop's time per scrape, in chunks, and every command in
    flight meanwhile waited for a chunk at each of its turns of the loop. Rendered
    as the events arrive, the same work is a few microseconds per frame, spread
    evenly, and a scrape's whole exposition takes 11 ms (measured in isolation),
    for about 0.5 KiB a device. Nor in a thread: a thread formatting 50,000 lines
    holds the GIL for most of each switch interval, and the event loop, which
    wakes thousands of times a second, waits up to 5 ms at every wake.

    A scrape takes each family's lines as they are when it reaches the family, so
    a device that leaves mid-scrape has only some of its lines."""

    def __init__(self) -> None:
        self._labels: dict[int, str] = {}
        self._lines: tuple[dict[int, bytes], ...] = tuple({} for _ in DEVICE_FAMILIES)

    def subscribe(self, events: SessionEvents) -> None:
        events.on(LoggedIn, self._logged_in)
        events.on(FrameReceived, lambda e: self._set(LAST_SEEN, e.device_id, e.at))
        events.on(StateChanged, lambda e: self._set_state(e.device_id, e.state))
        events.on(StatusReceived, self._status)
        events.on(Left, self._left)

    def _logged_in(self, event: LoggedIn) -> None:
        device = event.device
        self._labels[device.device_id] = label_text(
            device.device_id, device.name, device.namespace, device.type
        )
        self._set_state(device.device_id, "online")
        self._set(LAST_SEEN, device.device_id, event.at)

    def _status(self, event: StatusReceived) -> None:
        """The upload's percentages; its last-seen time came with its frame
        (``FrameReceived`` precedes it)."""
        utilisation, device_id = event.utilisation, event.device_id
        self._set(CPU, device_id, utilisation.cpu_percent)
        self._set(MEMORY, device_id, utilisation.memory_used_percent)
        self._set(DISK, device_id, utilisation.disk_used_percent)

    def _set_state(self, device_id: int, state: str) -> None:
        self._set(UP, device_id, 1.0 if state == "online" else 0.0, f',state="{state}"')

    def _set(self, family: int, device_id: int, value: float | None, more: str = "") -> None:
        """Render one line; a value of None removes it (not measured yet)."""
        label_set = self._labels.get(device_id)
        if label_set is None:  # not logged in here, or gone
            return
        if value is None:
            self._lines[family].pop(device_id, None)
        else:
            name = DEVICE_FAMILIES[family][0]
            self._lines[family][device_id] = f"{name}{{{label_set}{more}}} {value!r}\n".encode()

    def _left(self, event: Left) -> None:
        self._labels.pop(event.device_id, None)
        for lines in self._lines:
            lines.pop(event.device_id, None)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The families' text, a chunk at a time, yielding to the loop between."""
        for (name, help_text), family in zip(DEVICE_FAMILIES, self._lines, strict=True):
            lines = list(family.values())
            yield f"# HELP {name} {help_text}\n# TYPE {name} gauge\n".encode()
            for start in range(0, len(lines), RENDER_CHUNK):
                yield b"".join(lines[start : start + RENDER_CHUNK])
                await asyncio.sleep(0)


class _SessionsByState(Collector):
    """``edgefleet_sessions{state}``, counted from the live status at each scrape."""

    def __init__(self, book: LiveStatusBook) -> None:
        self._book = book

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "edgefleet_sessions",
            "Logged-in device sessions held by this instance, by state.",
            labels=["state"],
        )
        for state, count in sorted(self._book.counts().items()):
            family.add_metric([state], count)
        yield family


INSTALL_RESULTS = {"success": "succeeded", "fail": "failed", "timeout": "timed_out"}
"""The update command's answer -> the install result it counts as."""


class SouthboundMetrics:
    def __init__(
        self, book: LiveStatusBook, per_device: bool, login_queue: Callable[[], int] = lambda: 0
    ) -> None:
        """``login_queue``: how many password checks wait for their turn now."""
        self.registry = CollectorRegistry()
        self.devices = DeviceLines() if per_device else None
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        r.register(GcPauses())
        r.register(_SessionsByState(book))
        self.connections = Counter(
            "edgefleet_connections", "WebSocket connections accepted.", registry=r
        )
        self.logins = Counter(
            "edgefleet_logins", "Login attempts by result.", ["result"], registry=r
        )
        self.heartbeats = Counter("edgefleet_heartbeats", "Pings answered with a pong.", registry=r)
        self.frame_gap = Histogram(
            "edgefleet_frame_gap_seconds",
            "Seconds between two frames of a device (the heartbeat as the cloud sees it).",
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
            "edgefleet_disconnects", "Connections ended, by cause.", ["cause"], registry=r
        )
        self.commands = Counter(
            "edgefleet_commands",
            "Commands by order kind (builtin, custom) and result.",
            ["kind", "result"],
            registry=r,
        )
        self.command_latency = Histogram(
            "edgefleet_command_duration_seconds",
            "Seconds from sending a command to its result.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.records = Counter(
            "edgefleet_records",
            "Records uploaded, by result (accepted, duplicate, rejected; failed: the "
            "database was away) and transport (ws, http).",
            ["result", "transport"],
            registry=r,
        )
        self.ingest_bytes = Counter(
            "edgefleet_ingest_bytes",
            "Bytes taken in, by what (records: payload JSON; files: file bodies).",
            ["what"],
            registry=r,
        )
        self.files = Counter(
            "edgefleet_files",
            "File requests by result: stored, exists (PUT of a file the cloud had), "
            "present and missing (HEAD), mismatch, too_big.",
            ["result"],
            registry=r,
        )
        self.files_deduplicated = Counter(
            "edgefleet_files_deduplicated",
            "Files not sent because the cloud had them (HEAD answered present).",
            registry=r,
        )
        self.bytes_deduplicated = Counter(
            "edgefleet_deduplicated_bytes",
            "Bytes of files not sent because the cloud had them.",
            registry=r,
        )
        self.downloads_started = Counter(
            "edgefleet_artifact_downloads_started",
            "Artifact downloads asked for by devices, by kind: whole, or resumed (a "
            "Range after a broken download).",
            ["kind"],
            registry=r,
        )
        self.downloads_ended = Counter(
            "edgefleet_artifact_downloads_ended",
            "Artifact downloads ended, by result: completed, broken (the connection "
            "went first), refused (a range beyond the file).",
            ["result"],
            registry=r,
        )
        self.download_bytes = Counter(
            "edgefleet_artifact_download_bytes",
            "Bytes of artifacts sent to devices, broken downloads' included.",
            registry=r,
        )
        self.installs = Counter(
            "edgefleet_update_installs",
            "Answers to the update command (software installs), by result: succeeded "
            "(the new version runs), failed (download, checksum or installer), timed_out.",
            ["result"],
            registry=r,
        )
        for kind in ("whole", "resumed"):
            self.downloads_started.labels(kind)
        for result in ("completed", "broken", "refused"):
            self.downloads_ended.labels(result)
        for result in INSTALL_RESULTS.values():
            self.installs.labels(result)
        # Every result at 0 from the start, so rates and dashboards have a series.
        for result in ("accepted", "duplicate", "rejected", "failed"):
            for transport in ("ws", "http"):
                self.records.labels(result, transport)
        for what in ("records", "files"):
            self.ingest_bytes.labels(what)
        for result in ("stored", "exists", "present", "missing", "mismatch", "too_big"):
            self.files.labels(result)
        self.status_writes = Counter(
            "edgefleet_status_writes",
            "Device resource status writes (Kubernetes mode), by result.",
            ["result"],
            registry=r,
        )
        self.login_queue = Gauge(
            "edgefleet_login_queue",
            "Password checks (bcrypt) waiting for their turn now.",
            registry=r,
        )
        self.login_queue.set_function(login_queue)
        self.login_wait = Histogram(
            "edgefleet_login_wait_seconds",
            "Seconds a password check waited for its turn.",
            buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
            registry=r,
        )
        self.password_checks = Counter(
            "edgefleet_password_checks",
            "Logins that needed bcrypt, by outcome (accepted, refused, overloaded: no turn "
            "in time, abandoned: the device left while waiting).",
            ["outcome"],
            registry=r,
        )
        self.status_write_queue = Gauge(
            "edgefleet_status_write_queue",
            "Devices whose resource status waits to be written (Kubernetes mode).",
            registry=r,
        )
        self.status_writes_deferred = Counter(
            "edgefleet_status_writes_deferred",
            "Device status writes that waited for this instance's share of the budget, by "
            "priority: state (online, unknown, offline) or metrics (Kubernetes mode).",
            ["priority"],
            registry=r,
        )
        for priority in ("state", "metrics"):  # both series from the start, at 0
            self.status_writes_deferred.labels(priority)
        self.last_beat = Gauge(
            "edgefleet_instance_last_beat_timestamp_seconds",
            "When this instance's last beat in the database that went through began: each "
            "releases lost instances and counts the processes sharing the status-write budget.",
            registry=r,
        )
        self.status_write_share = Gauge(
            "edgefleet_status_write_share",
            "Device status writes a second this instance may make now: its share of the "
            "installation's budget (Kubernetes mode; 0 otherwise).",
            registry=r,
        )

    def subscribe(self, events: SessionEvents) -> None:
        if self.devices is not None:
            self.devices.subscribe(events)
        events.on(Connected, lambda _: self.connections.inc())
        events.on(LoggedIn, lambda _: self.logins.labels("success").inc())
        events.on(LoginFailed, lambda e: self.logins.labels(e.reason).inc())
        events.on(HeartbeatAnswered, lambda _: self.heartbeats.inc())
        events.on(FrameReceived, self._frame)
        events.on(StatusReceived, lambda _: self.statuses.labels("accepted").inc())
        events.on(StatusRejected, lambda e: self.statuses.labels(e.reason).inc())
        events.on(FrameIgnored, lambda e: self.bad_frames.labels(e.reason).inc())
        events.on(ConnectionEnded, lambda e: self.disconnects.labels(e.cause).inc())
        events.on(CommandFinished, self._command_finished)
        events.on(CommandNotSent, lambda e: self.commands.labels(_kind(e.order), e.refusal).inc())
        events.on(PasswordChecked, self._password_checked)
        events.on(DataIngested, self._data)
        events.on(FileReceived, self._file)
        events.on(
            ArtifactDownloadStarted,
            lambda e: self.downloads_started.labels("resumed" if e.resumed else "whole").inc(),
        )
        events.on(ArtifactDownloadEnded, self._download_ended)

    def _download_ended(self, event: ArtifactDownloadEnded) -> None:
        self.downloads_ended.labels(event.result).inc()
        self.download_bytes.inc(event.bytes)

    def _data(self, event: DataIngested) -> None:
        for result, count in (
            ("failed", event.failed),
            ("accepted", event.accepted),
            ("duplicate", event.duplicates),
            ("rejected", event.rejected),
        ):
            if count:
                self.records.labels(result, event.transport).inc(count)
        self.ingest_bytes.labels("records").inc(event.bytes)

    def _file(self, event: FileReceived) -> None:
        self.files.labels(event.result).inc()
        if event.result == "stored":
            self.ingest_bytes.labels("files").inc(event.bytes)
        elif event.result == "present":
            self.files_deduplicated.inc()
            self.bytes_deduplicated.inc(event.bytes)

    def _password_checked(self, event: PasswordChecked) -> None:
        self.password_checks.labels(event.outcome).inc()
        if event.outcome in ("accepted", "refused"):
            self.login_wait.observe(event.waited)

    def _frame(self, event: FrameReceived) -> None:
        if event.gap is not None:
            self.frame_gap.observe(event.gap)

    def _command_finished(self, event: CommandFinished) -> None:
        self.commands.labels(_kind(event.order), event.result.status).inc()
        self.command_latency.observe(event.seconds)
        if event.order == UPDATE and event.result.status in INSTALL_RESULTS:
            self.installs.labels(INSTALL_RESULTS[event.result.status]).inc()

    async def exposition(self) -> AsyncIterator[bytes]:
        """The exposition text in chunks, for a streamed response: the fleet
        metrics, then the devices' own."""
        yield generate_latest(self.registry)
        if self.devices is not None:
            async for chunk in self.devices.chunks():
                yield chunk


def _kind(order: str) -> str:
    return "builtin" if order in BUILTIN_ORDERS else "custom"
