"""The last hour kept for a connected device's chart: one point per interval, the
newest 120, and a cost per device fixed by the ring's size."""

from __future__ import annotations

import tracemalloc

from edgefleet.southbound.status_history import CAPACITY, StatusHistory
from edgefleet.southbound.utilisation import Utilisation

T0 = 1_795_000_000.0


def busy(cpu: float | None) -> Utilisation:
    return Utilisation(cpu_percent=cpu, memory_used_percent=41.234, disk_used_percent=87.5)


def test_one_point_per_interval_is_kept_oldest_first() -> None:
    history = StatusHistory(interval=30.0)
    for n in range(8):  # an upload every 15 s for two minutes
        history.add(T0 + 15 * n, busy(float(n)))
    samples = history.samples()
    assert [s.at for s in samples] == [T0, T0 + 30, T0 + 60, T0 + 90]
    assert [s.cpu_percent for s in samples] == [0.0, 2.0, 4.0, 6.0]
    assert samples[0].memory_used_percent == 41.23 and samples[0].disk_used_percent == 87.5


def test_only_the_last_hour_is_kept_and_since_cuts_it() -> None:
    history = StatusHistory(interval=30.0)
    for n in range(CAPACITY + 50):
        history.add(T0 + 30 * n, busy(n % 100))
    samples = history.samples()
    assert len(samples) == CAPACITY
    assert samples[0].at == T0 + 30 * 50 and samples[-1].at == T0 + 30 * (CAPACITY + 49)
    assert len(history.samples(since=T0 + 30 * (CAPACITY + 40))) == 10


def test_a_figure_the_device_did_not_send_stays_missing() -> None:
    history = StatusHistory(interval=30.0)
    history.add(T0, busy(None))  # the first upload has no CPU figure yet
    history.add(T0 + 30, busy(250.0))  # and a wrong one is held to the scale
    first, second = history.samples()
    assert first.cpu_percent is None and second.cpu_percent == 100.0


def test_a_full_hour_costs_about_1_5_kb_per_device() -> None:
    devices = 1000
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    histories = [StatusHistory(interval=30.0) for _ in range(devices)]
    for history in histories:
        for n in range(CAPACITY * 2):
            history.add(T0 + 30 * n, busy(12.5))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    per_device = grown / devices
    assert len(histories[0].samples()) == CAPACITY
    assert per_device < 1600, per_device
