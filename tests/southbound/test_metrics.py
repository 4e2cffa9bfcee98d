"""The per-device exposition: parseable whatever the device names, and optional."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.southbound.exporter import exporter


async def test_device_series_survive_quotes_newlines_and_backslashes() -> None:
    text = (await exporter(per_device=True).render()).decode()
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
    text = (await exporter(per_device=False).render()).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "edgefleet_device_up" not in names
    assert {"edgefleet_logins", "edgefleet_sessions"} <= names
