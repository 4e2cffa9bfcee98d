"""The cycle collector of a serving process: how it is tuned, and how long it
holds the event loop.

A collection runs on the loop's thread with the GIL held, so every pause is a
pause of every device session and request of the process. How long one takes
depends on how many tracked objects its generation holds, not on how much garbage
there is: at 10,000 devices the young generation alone holds the objects of every
receive waiting for its next frame, and collecting it took 150-230 ms in
``bench/southbound_load.py`` (with about 20 such objects a device, before a
connection awaited its frames in its own task). ``edgefleet_gc_pause_seconds`` shows
those pauses where operators look, next to the latency they explain.
"""

from __future__ import annotations

import bisect
import gc
import itertools
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Upper bounds, in seconds, of the pause histogram's buckets."""
GENERATIONS = (0, 1, 2)


class _Pauses:
    """Collections by generation and duration, counted from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.buckets = {g: [0] * (len(BUCKETS) + 1) for g in GENERATIONS}
        self.sums = dict.fromkeys(GENERATIONS, 0.0)
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        generation = info["generation"]
        self.buckets[generation][bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sums[generation] += seconds


_pauses = _Pauses()


def watch_pauses() -> None:
    """Count every collection of this process from now on (once per process)."""
    if _pauses not in gc.callbacks:
        gc.callbacks.append(_pauses)


def settle() -> None:
    """Tune the collector for serving, once everything of the start-up is built."""
    watch_pauses()
    # Everything allocated so far lives as long as the process: keep it out of the
    # full passes, which otherwise walk it all.
    gc.freeze()
    # Status uploads live 15 s, long enough to reach the oldest generation, so
    # with the default thresholds a southbound holding 10,000 devices ran a full
    # collection every ~5 s, each pausing the loop for 0.7-1 s (measured with a
    # gc.callbacks probe). The data here is acyclic and freed by reference
    # counting; the cycle collector only needs to run far less often.
    gc.set_threshold(50_000, 20, 100)


class GcPauses(Collector):
    """``edgefleet_gc_pause_seconds{generation}``: the process's collections so far."""

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "edgefleet_gc_pause_seconds",
            "Seconds the cycle collector held the process (and its event loop), by "
            "generation collected.",
            labels=["generation"],
        )
        bounds = [*map(str, BUCKETS), "+Inf"]
        for generation in GENERATIONS:
            cumulative = list(itertools.accumulate(_pauses.buckets[generation]))
            buckets = list(zip(bounds, cumulative, strict=True))
            family.add_metric([str(generation)], buckets, _pauses.sums[generation])
        yield family
