"""The live status: the latest upload of every connected device, in memory.

CPU utilisation needs two uploads: the device reports cumulative CPU seconds, and
the busy share of the time that passed between two reports is the percentage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _number(section: Any, key: str) -> float | None:
    if isinstance(section, dict):
        value = section.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _cpu_times(data: dict[str, Any]) -> tuple[float, float] | None:
    """(busy, total) cumulative CPU seconds, or None if the upload lacks them."""
    cpu = data.get("CPU_info")
    parts = [
        _number(cpu, k)
        for k in ("user_cpu_time", "system_cpu_time", "idle_cpu_time", "io_wait_cpu_time")
    ]
    if any(p is None for p in parts):
        return None
    user, system, idle, io_wait = parts  # type: ignore[misc]
    return user + system, user + system + idle + io_wait


def _memory_used_percent(data: dict[str, Any]) -> float | None:
    memory = data.get("Memory_info")
    total = _number(memory, "total_memory_mb")
    free = _number(memory, "free_memory_mb")
    cache = _number(memory, "buff_cache_mb") or 0.0
    if not total or free is None:
        return None
    return round(max(0.0, min(100.0, (total - free - cache) / total * 100)), 2)


def _disk_used_percent(data: dict[str, Any]) -> float | None:
    disk = data.get("Disk_info")
    percent = _number(disk, "root_used_percent")
    if percent is not None:
        return percent
    total, used = _number(disk, "root_total_size_mb"), _number(disk, "root_used_size_mb")
    return round(used / total * 100, 2) if total and used is not None else None


@dataclass
class LiveEntry:
    device_id: int
    label_text: str  # its Prometheus label set, escaped once
    state: str
    connected_at: float
    last_seen: float
    latest: dict[str, Any] = field(default_factory=dict)
    cpu_percent: float | None = None
    memory_used_percent: float | None = None
    disk_used_percent: float | None = None
    _cpu_times: tuple[float, float] | None = None

    def update(self, data: dict[str, Any], at: float) -> None:
        times = _cpu_times(data)
        if times and self._cpu_times:
            busy = times[0] - self._cpu_times[0]
            total = times[1] - self._cpu_times[1]
            if total > 0 and busy >= 0:
                self.cpu_percent = round(min(100.0, busy / total * 100), 2)
        self._cpu_times = times
        self.latest = data
        self.memory_used_percent = _memory_used_percent(data)
        self.disk_used_percent = _disk_used_percent(data)
        self.last_seen = at


class LiveStatusBook:
    """device id -> ``LiveEntry`` for the devices connected to this instance."""

    def __init__(self) -> None:
        self.entries: dict[int, LiveEntry] = {}

    def connected(self, device_id: int, label_text: str, at: float) -> None:
        self.entries[device_id] = LiveEntry(device_id, label_text, "online", at, at)

    def get(self, device_id: int) -> LiveEntry | None:
        return self.entries.get(device_id)

    def disconnected(self, device_id: int) -> None:
        self.entries.pop(device_id, None)
