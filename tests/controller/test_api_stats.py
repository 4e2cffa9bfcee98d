"""Fleet statistics."""

from __future__ import annotations

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
