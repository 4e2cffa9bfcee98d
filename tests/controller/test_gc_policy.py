"""The collector's pauses, as an operator reads them from a scrape."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edgefleet.controller.gc_policy import GcPauses, watch_pauses


def pauses() -> dict[tuple[str, str], float]:
    """(generation, sample name) -> value, from a real exposition."""
    registry = CollectorRegistry()
    registry.register(GcPauses())
    text = generate_latest(registry).decode()
    (family,) = text_string_to_metric_families(text)
    return {
        (s.labels["generation"], s.name): s.value
        for s in family.samples
        if s.name.endswith(("_count", "_sum"))
    }


def test_each_collection_is_counted_by_generation_with_its_duration() -> None:
    watch_pauses()
    watch_pauses()  # a second call does not count collections twice
    before = pauses()
    gc.collect()  # a full collection: the oldest generation
    gc.collect(0)
    after = pauses()
    count, total = "edgefleet_gc_pause_seconds_count", "edgefleet_gc_pause_seconds_sum"
    assert after["2", count] - before["2", count] == 1
    assert after["0", count] - before["0", count] >= 1
    assert after["2", total] > before["2", total]
