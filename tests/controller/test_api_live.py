"""Live status and commands before any device can hold a session."""

from __future__ import annotations

from tests.api_client import ApiClient


async def test_status_of_an_offline_device(api: ApiClient) -> None:
    device = await api.register()
    answer = await api.get(f"/api/v1/devices/{device['device_id']}/status")
    assert answer.failure(409, "DEVICE_OFFLINE") == "Device is offline!"
    (await api.get("/api/v1/devices/9/status")).failure(404, "DEVICEOP_ERROR")


async def test_command_to_an_offline_device(api: ApiClient) -> None:
    device = await api.register()
    path = f"/api/v1/devices/{device['device_id']}/commands"
    answer = await api.post(path, {"order": "restart"})
    assert answer.failure(409, "DEVICE_OFFLINE") == "Device is offline!"
    (await api.post("/api/v1/devices/9/commands", {"order": "restart"})).failure(
        404, "DEVICEOP_ERROR"
    )
    for body, field in (
        ({}, "order"),
        ({"order": "x", "timeout": 0}, "timeout"),
        ({"order": "x", "params": []}, "params"),
    ):
        assert f"'{field}'" in (await api.post(path, body)).failure(400, "GENERAL_ERROR")


async def test_group_command_answers_per_device(api: ApiClient) -> None:
    group = await api.create_group("g")
    devices = [await api.register() for _ in range(3)]
    for device in devices:
        await api.put(f"/api/v1/groups/{group['group_id']}/devices/{device['device_id']}")
    answer = await api.post(
        f"/api/v1/groups/{group['group_id']}/commands",
        {"order": "set_exposure", "params": {"value": 3}},
    )
    results = answer.data["results"]
    assert sorted(r["device_id"] for r in results) == sorted(d["device_id"] for d in devices)
    assert all(r["status"] == "fail" and r["message"] == "Device is offline!" for r in results)
    (await api.post("/api/v1/groups/9/commands", {"order": "x"})).failure(404, "GROUPOP_ERROR")
