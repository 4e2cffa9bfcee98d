"""The per-device exposition: parseable whatever the device names, and optional."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from edgefleet.southbound.live import LiveStatusBook
from edgefleet.southbound.metrics import SouthboundMetrics, label_text


def book_with_awkward_names() -> LiveStatusBook:
    book = LiveStatusBook()
    book.connected(1, label_text(1, 'gate "north"\nline 2', "fleet", "cam\\era"), 100.0)
    book.connected(2, label_text(2, "plain", "", "gateway"), 200.0)
    book.get(2).state = "unknown"  # type: ignore[union-attr]
    book.get(2).memory_used_percent = 61.5  # type: ignore[union-attr]
    return book


async def test_device_series_survive_quotes_newlines_and_backslashes() -> None:
    text = (await SouthboundMetrics(per_device=True).render(book_with_awkward_names())).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    up = {
        s.labels["device_id"]: (s.labels, s.value) for s in families["edgefleet_device_up"].samples
    }
    assert up["1"][0] == {
        "device_id": "1",
        "name": 'gate "north"\nline 2',
        "namespace": "fleet",
        "type": "cam\\era",
    }
    assert up["1"][1] == 1.0 and up["2"][1] == 0.5
    memory = families["edgefleet_device_memory_used_percent"].samples
    assert [(s.labels["device_id"], s.value) for s in memory] == [("2", 61.5)]
    seen = families["edgefleet_device_last_seen_timestamp_seconds"].samples
    assert sorted(s.value for s in seen) == [100.0, 200.0]
    assert families["edgefleet_device_cpu_percent"].samples == []  # no two uploads yet


async def test_per_device_series_can_be_turned_off() -> None:
    text = (await SouthboundMetrics(per_device=False).render(book_with_awkward_names())).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "edgefleet_device_up" not in names
    assert "edgefleet_logins" in names
