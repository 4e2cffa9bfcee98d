"""The live status: the latest upload of every connected device, in memory, kept
from the session events; the northbound reads it (``view``), and so does the
metrics exporter at scrape time. Each entry also keeps the last hour of the
device's utilisation for its chart (``status_history.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgefleet.southbound.events import (
    FrameReceived,
    Left,
    LoggedIn,
    SessionEvents,
    StateChanged,
    StatusReceived,
)
from edgefleet.southbound.status_history import SAMPLE_INTERVAL, StatusHistory
from edgefleet.southbound.utilisation import Utilisation


@dataclass
class LiveEntry:
    device_id: int
    state: str
    connected_at: float
    last_seen: float
    latest: dict[str, Any] = field(default_factory=dict)
    cpu_percent: float | None = None
    memory_used_percent: float | None = None
    disk_used_percent: float | None = None
    history: StatusHistory = field(default_factory=StatusHistory)

    def update(self, data: dict[str, Any], utilisation: Utilisation, at: float) -> None:
        self.latest = data
        self.cpu_percent = utilisation.cpu_percent
        self.memory_used_percent = utilisation.memory_used_percent
        self.disk_used_percent = utilisation.disk_used_percent
        self.last_seen = at
        self.history.add(at, utilisation)

    def view(self) -> dict[str, Any]:
        """The live status as the northbound serves it (the internal API's JSON)."""
        return {
            "state": self.state,
            "last_seen": self.last_seen,
            "cpu_percent": self.cpu_percent,
            "memory_used_percent": self.memory_used_percent,
            "disk_used_percent": self.disk_used_percent,
            "latest": self.latest,
        }

    def history_view(self, since: float) -> list[dict[str, Any]]:
        """The kept samples at or after ``since`` (the internal API's JSON)."""
        return [vars(sample) for sample in self.history.samples(since)]


class LiveStatusBook:
    """device id -> ``LiveEntry`` for the devices connected to this instance."""

    def __init__(self, sample_interval: float = SAMPLE_INTERVAL) -> None:
        self.entries: dict[int, LiveEntry] = {}
        self._sample_interval = sample_interval

    def subscribe(self, events: SessionEvents) -> None:
        events.on(LoggedIn, self._logged_in)
        events.on(FrameReceived, self._frame)
        events.on(StateChanged, self._state_changed)
        events.on(StatusReceived, self._status)
        events.on(Left, self._left)

    def get(self, device_id: int) -> LiveEntry | None:
        return self.entries.get(device_id)

    def counts(self) -> dict[str, int]:
        """Sessions by state."""
        counts = {"online": 0, "unknown": 0}
        for entry in self.entries.values():
            counts[entry.state] = counts.get(entry.state, 0) + 1
        return counts

    def _logged_in(self, event: LoggedIn) -> None:
        device_id = event.device.device_id
        history = StatusHistory(self._sample_interval)
        self.entries[device_id] = LiveEntry(
            device_id, "online", event.at, event.at, history=history
        )

    def _frame(self, event: FrameReceived) -> None:
        if entry := self.entries.get(event.device_id):
            entry.last_seen = event.at

    def _state_changed(self, event: StateChanged) -> None:
        if entry := self.entries.get(event.device_id):
            entry.state = event.state

    def _status(self, event: StatusReceived) -> None:
        if entry := self.entries.get(event.device_id):
            entry.update(event.data, event.utilisation, event.at)

    def _left(self, event: Left) -> None:
        self.entries.pop(event.device_id, None)
