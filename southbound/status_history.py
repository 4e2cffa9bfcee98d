"""The last hour of a connected device's utilisation, in memory, for its chart.

The device log keeps one status per device per ten minutes (``recorder.py``): a
fleet-wide write rate the database can take, but six points an hour. What a chart
of the last hour needs is kept here instead, next to the live status of each
connected device: one sample per ``SAMPLE_INTERVAL`` seconds, the newest
``CAPACITY``, in a fixed-size ring of packed integers — times as whole seconds,
percentages in hundredths — because a fleet is large: the cost per device is
fixed by the ring's size (1.53 KB, allocated at login, measured with ``tracemalloc``
in ``tests/southbound/test_status_history.py``), whatever the device sends.

The ring goes with the session: a device that leaves takes its ring with it, and
starts a new one at its next login (on whichever instance holds it then).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from edgefleet.southbound.utilisation import Utilisation

SAMPLE_INTERVAL = 30.0
"""Least seconds between two kept samples (uploads come every 15 s)."""
CAPACITY = 120
"""Samples kept: one hour at one per ``SAMPLE_INTERVAL``."""
MISSING = 0xFFFF
"""A percentage the device did not report (its first upload has no CPU figure)."""
SCALE = 100


@dataclass(frozen=True)
class Sample:
    at: float
    cpu_percent: float | None
    memory_used_percent: float | None
    disk_used_percent: float | None


def _pack(percent: float | None) -> int:
    if percent is None:
        return MISSING
    return round(min(100.0, max(0.0, percent)) * SCALE)


def _unpack(value: int) -> float | None:
    return None if value == MISSING else value / SCALE


class StatusHistory:
    """One device's recent samples, oldest first, at most ``CAPACITY``."""

    __slots__ = ("_at", "_count", "_interval", "_next", "_values")

    def __init__(self, interval: float = SAMPLE_INTERVAL) -> None:
        self._interval = interval
        self._at = array("I", bytes(4 * CAPACITY))
        self._values = array("H", bytes(2 * 3 * CAPACITY))
        self._next = 0
        self._count = 0

    def add(self, at: float, utilisation: Utilisation) -> None:
        """Keep the sample unless the last kept one is less than the interval old."""
        if self._count and at - self._at[(self._next - 1) % CAPACITY] < self._interval:
            return
        slot = self._next
        self._at[slot] = int(at)
        base = 3 * slot
        self._values[base] = _pack(utilisation.cpu_percent)
        self._values[base + 1] = _pack(utilisation.memory_used_percent)
        self._values[base + 2] = _pack(utilisation.disk_used_percent)
        self._next = (slot + 1) % CAPACITY
        self._count = min(CAPACITY, self._count + 1)

    def samples(self, since: float = 0.0) -> list[Sample]:
        """The kept samples at or after ``since``, oldest first."""
        found = []
        first = (self._next - self._count) % CAPACITY
        for n in range(self._count):
            slot = (first + n) % CAPACITY
            if self._at[slot] < since:
                continue
            base = 3 * slot
            found.append(
                Sample(
                    float(self._at[slot]),
                    _unpack(self._values[base]),
                    _unpack(self._values[base + 1]),
                    _unpack(self._values[base + 2]),
                )
            )
        return found
