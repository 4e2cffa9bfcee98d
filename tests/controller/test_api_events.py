"""The device log: filters, pages, and history that outlives the device."""

from __future__ import annotations

import asyncio

from tests.api_client import ApiClient


async def test_events_filter_by_kind_and_time_and_page(api: ApiClient) -> None:
    device = await api.register()
    path = f"/api/v1/devices/{device['device_id']}"
    for i in range(4):
        await api.patch(path, {"description": f"v{i}"})
    events = f"{path}/events"

    everything = (await api.get(events)).data
    assert everything["total"] == 5
    assert [e["event"] for e in everything["items"]] == ["updated"] * 4 + ["registered"]
    assert all(e["device_id"] == device["device_id"] for e in everything["items"])

    updates = (await api.get(events, params={"event": "updated", "per_page": 3})).data
    assert updates["total"] == 4 and len(updates["items"]) == 3
    rest = (await api.get(events, params={"event": "updated", "per_page": 3, "page": 2})).data
    assert len(rest["items"]) == 1
    assert {e["event_id"] for e in updates["items"]}.isdisjoint(
        e["event_id"] for e in rest["items"]
    )

    registered_at = everything["items"][-1]["at"]
    await asyncio.sleep(0.01)
    later = (await api.get(events, params={"since": registered_at})).data
    assert later["total"] == 5  # since is inclusive
    before = (await api.get(events, params={"until": registered_at})).data
    assert before["total"] == 0  # until is exclusive
    window = (
        await api.get(
            events, params={"since": "2000-01-01T00:00:00Z", "until": "2000-01-02T00:00:00Z"}
        )
    ).data
    assert window["total"] == 0


async def test_bad_event_filters_name_the_field(api: ApiClient) -> None:
    device = await api.register()
    events = f"/api/v1/devices/{device['device_id']}/events"
    answer = await api.get(events, params={"since": "yesterday"})
    assert "'since'" in answer.failure(400, "GENERAL_ERROR")
    answer = await api.get(events, params={"per_page": "1000"})
    assert "'per_page'" in answer.failure(400, "GENERAL_ERROR")


async def test_log_of_deleted_device_stays_readable(api: ApiClient) -> None:
    device = await api.register()
    await api.delete(f"/api/v1/devices/{device['device_id']}")
    answer = await api.get(f"/api/v1/devices/{device['device_id']}/events")
    assert [e["event"] for e in answer.data["items"]] == ["deleted", "registered"]
    (await api.get("/api/v1/devices/42/events")).failure(404, "DEVICEOP_ERROR")
