"""Fleet statistics."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert

from edgefleet.controller.store import Store
from edgefleet.controller.store.database import utcnow
from edgefleet.controller.store.schema import device_events
from edgefleet.controller.store.sessions import SessionChange
from tests.api_client import ApiClient


async def test_stats_count_devices_by_state_and_type(api: ApiClient) -> None:
    empty = (await api.get("/api/v1/stats")).data
    assert empty == {
        "devices": 0,
        "by_state": {"online": 0, "unknown": 0, "offline": 0},
        "by_type": {},
        "connected": 0,
        "commands_last_hour": 0,
    }
    for kind in ("camera", "camera", "gateway"):
        await api.register(type=kind)
    stats = (await api.get("/api/v1/stats")).data
    assert stats["devices"] == 3
    assert stats["by_state"] == {"online": 0, "unknown": 0, "offline": 3}
    assert stats["by_type"] == {"camera": 2, "gateway": 1}


async def test_stats_count_sessions_and_the_last_hours_commands(
    api: ApiClient, store: Store
) -> None:
    devices = [await api.register() for _ in range(2)]
    ids = [int(device["device_id"]) for device in devices]
    await store.sessions.apply(
        "southbound-0", [SessionChange("connected", ids[0], "connected", address="a:1")]
    )
    now = utcnow()
    sent = [(ids[0], now - timedelta(minutes=1)), (ids[1], now - timedelta(minutes=59)),
            (ids[1], now - timedelta(minutes=61))]  # fmt: skip
    async with store.db.begin() as connection:
        await connection.execute(
            insert(device_events),
            [{"device_id": d, "at": at, "event": "command_sent", "detail": {"order": "x"}}
             for d, at in sent]
            + [{"device_id": ids[0], "at": now, "event": "command_result", "detail": {}}],
        )  # fmt: skip
    stats = (await api.get("/api/v1/stats")).data
    assert stats["commands_last_hour"] == 2  # sent, within the hour; results do not count
    assert stats["connected"] == 1
    assert stats["by_state"] == {"online": 1, "unknown": 0, "offline": 1}
