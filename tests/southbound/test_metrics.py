"""The per-device exposition: parseable whatever the device names, and optional."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from edgefleet.southbound.events import DeviceIdentity, Left, LoggedIn, SessionEvents
from edgefleet.southbound.live import LiveStatusBook
from edgefleet.southbound.metrics import RENDER_CHUNK, SouthboundMetrics
from tests.southbound.exporter import exporter, scrape


async def test_device_series_survive_quotes_newlines_and_backslashes() -> None:
    text = await scrape(exporter(per_device=True))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    up = {
        s.labels["device_id"]: (s.labels, s.value) for s in families["edgefleet_device_up"].samples
    }
    assert up["1"][0] == {
        "device_id": "1",
        "name": 'gate "north"\nline 2',
        "namespace": "fleet",
        "type": "cam\\era",
        "state": "online",
    }
    assert (up["1"][1], up["2"][1], up["2"][0]["state"]) == (1.0, 0.0, "unknown")
    memory = families["edgefleet_device_memory_used_percent"].samples
    assert [(s.labels["device_id"], s.value) for s in memory] == [("2", 61.5)]
    seen = families["edgefleet_device_last_seen_timestamp_seconds"].samples
    assert sorted(s.value for s in seen) == [100.0, 200.0]
    assert families["edgefleet_device_cpu_percent"].samples == []  # no two uploads yet
    sessions = {s.labels["state"]: s.value for s in families["edgefleet_sessions"].samples}
    assert sessions == {"online": 1.0, "unknown": 1.0}


async def test_per_device_series_can_be_turned_off() -> None:
    text = await scrape(exporter(per_device=False))
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "edgefleet_device_up" not in names
    assert {"edgefleet_logins", "edgefleet_sessions"} <= names


async def test_a_fleet_larger_than_one_chunk_is_scraped_whole_while_devices_leave() -> None:
    """A scrape streams in chunks with the event loop running between them; a device
    that leaves meanwhile loses its later lines, and the text still parses."""
    events = SessionEvents()
    book = LiveStatusBook()
    book.subscribe(events)
    metrics = SouthboundMetrics(book, per_device=True)
    metrics.subscribe(events)
    fleet = 2 * RENDER_CHUNK + 1
    for device_id in range(1, fleet + 1):
        identity = DeviceIdentity(device_id, f"cam-{device_id}", "", "camera", None, 1)
        events.publish(LoggedIn(identity, "10.0.0.1:5000", False, frozenset(), 100.0))
    chunks = []
    async for chunk in metrics.exposition():
        chunks.append(chunk)
        if len(chunks) == 4:  # fleet metrics, first family's header, 2 of its 3 chunks
            events.publish(Left(fleet, "closed", 101.0))
    families = {f.name: f for f in text_string_to_metric_families(b"".join(chunks).decode())}
    up = [s.labels["device_id"] for s in families["edgefleet_device_up"].samples]
    assert sorted(map(int, up)) == list(range(1, fleet + 1))
    seen = families["edgefleet_device_last_seen_timestamp_seconds"].samples
    assert len(seen) == fleet - 1
