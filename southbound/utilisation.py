"""From the numbers of a status upload to the percentages the cloud shows.

A device reports cumulative CPU seconds; the busy share of the time that passed
between two uploads is its CPU utilisation, so a session keeps the previous
upload's times (``UtilisationMeter``). Memory and disk come from one upload.
Every number was checked at the protocol boundary (``StatusReport.read``), and
every percentage here is within 0 to 100.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgefleet.agent.protocol import StatusReport


@dataclass(frozen=True)
class Utilisation:
    cpu_percent: float | None = None
    memory_used_percent: float | None = None
    disk_used_percent: float | None = None


def _percent(part: float, whole: float) -> float:
    return round(max(0.0, min(100.0, part / whole * 100)), 2)


def _memory_used_percent(report: StatusReport) -> float | None:
    total, free = report.total_memory_mb, report.free_memory_mb
    if not total or free is None:
        return None
    return _percent(total - free - (report.buff_cache_mb or 0.0), total)


def _disk_used_percent(report: StatusReport) -> float | None:
    if report.root_used_percent is not None:
        return report.root_used_percent
    total, used = report.root_total_size_mb, report.root_used_size_mb
    return _percent(used, total) if total and used is not None else None


class UtilisationMeter:
    """One device's utilisation, upload after upload."""

    __slots__ = ("_cpu_percent", "_cpu_times")

    def __init__(self) -> None:
        self._cpu_times: tuple[float, float] | None = None  # (busy, total) last time
        self._cpu_percent: float | None = None

    def read(self, report: StatusReport) -> Utilisation:
        times = None
        if report.cpu_times is not None:
            user, system, idle, io_wait = report.cpu_times
            times = (user + system, user + system + idle + io_wait)
        if times and self._cpu_times:
            busy, total = times[0] - self._cpu_times[0], times[1] - self._cpu_times[1]
            if total > 0 and busy >= 0:
                self._cpu_percent = _percent(busy, total)
        self._cpu_times = times
        return Utilisation(
            self._cpu_percent, _memory_used_percent(report), _disk_used_percent(report)
        )
