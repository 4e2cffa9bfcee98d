"""Device registration, reads, lists, changes and deletion over real HTTP."""

from __future__ import annotations

import logging

import bcrypt
import pytest
from sqlalchemy import select

from edgefleet.controller.store import Store
from edgefleet.controller.store.schema import devices
from tests.api_client import ApiClient

DEVICES = "/api/v1/devices"


async def stored_secret(store: Store, device_id: str) -> str:
    async with store.db.begin() as connection:
        return await connection.scalar(
            select(devices.c.secret).where(devices.c.device_id == int(device_id))
        )


async def event_names(api: ApiClient, device_id: str) -> list[str]:
    answer = await api.get(f"{DEVICES}/{device_id}/events")
    return [e["event"] for e in reversed(answer.data["items"])]


async def test_registering_returns_id_and_generated_password_once(
    api: ApiClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    device = await api.register(name="Gate camera 17", type="camera", eth_mac="aa:bb:cc:dd:ee:ff")
    assert device["device_id"].isdigit() and int(device["device_id"]) > 2**53
    password = device["password"]
    assert len(password) >= 22  # >= 128 bits in URL-safe base64
    assert set(password) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert bcrypt.checkpw(
        password.encode(), (await stored_secret(store, device["device_id"])).encode()
    )

    again = await api.get(f"{DEVICES}/{device['device_id']}")
    assert again.status == 200
    assert "password" not in again.data and "secret" not in again.data
    assert again.data["name"] == "Gate camera 17"
    assert again.data["state"] == "offline"
    assert password not in caplog.text
    assert await event_names(api, device["device_id"]) == ["registered"]


async def test_given_password_is_kept(api: ApiClient, store: Store) -> None:
    device = await api.register(password="correct horse battery")
    assert device["password"] == "correct horse battery"
    secret = await stored_secret(store, device["device_id"])
    assert bcrypt.checkpw(b"correct horse battery", secret.encode())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hardware_sn": "S", "hardware_model": "M"}, "name"),
        ({"name": "x", "hardware_model": "M"}, "hardware_sn"),
        ({"name": "x", "hardware_sn": "S", "hardware_model": "M", "password": "short"}, "password"),
        (
            {"name": "x", "hardware_sn": "S", "hardware_model": "M", "password": "é" * 40},
            "password",
        ),
        ({"name": "x", "hardware_sn": "S", "hardware_model": "M", "eth_mac": "nope"}, "eth_mac"),
        ({"name": "x", "hardware_sn": "S", "hardware_model": "M", "lte_imei": "12"}, "lte_imei"),
        ({"name": 5, "hardware_sn": "S", "hardware_model": "M"}, "name"),
        ({"name": "x", "hardware_sn": "S", "hardware_model": "M", "disabled": "no"}, "disabled"),
        ({"name": "x", "hardware_sn": "S", "hardware_model": "M", "colour": "red"}, "colour"),
        ({"name": "x", "hardware_sn": "S", "hardware_model": "M", "type": "Big Cam"}, "type"),
    ],
)
async def test_invalid_registration_names_the_field(api: ApiClient, body: dict, field: str) -> None:
    message = (await api.post(DEVICES, body)).failure(400, "GENERAL_ERROR")
    assert f"'{field}'" in message
    assert (await api.get(DEVICES)).data["total"] == 0


async def test_malformed_bodies_are_400(api: ApiClient) -> None:
    not_json = await api.post(
        DEVICES, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert "invalid JSON" in not_json.failure(400, "GENERAL_ERROR")
    wrong_type = await api.post(DEVICES, data=b"name=x", headers={"Content-Type": "text/plain"})
    assert "Content-Type" in wrong_type.failure(400, "GENERAL_ERROR")
    array = await api.post(DEVICES, [1, 2])
    assert array.failure(400, "GENERAL_ERROR").startswith("body")
    huge = await api.post(DEVICES, {"name": "x" * (2 * 1024 * 1024)})
    huge.failure(413, "GENERAL_ERROR")


async def test_same_sn_and_model_twice_is_409(api: ApiClient) -> None:
    await api.register(hardware_sn="SN-1", hardware_model="ModelB")
    again = await api.post(
        DEVICES, {"name": "other", "hardware_sn": "SN-1", "hardware_model": "ModelB"}
    )
    assert "SN-1" in again.failure(409, "DEVICEOP_ERROR")
    await api.register(hardware_sn="SN-1", hardware_model="ModelC")  # other model: fine


async def test_unknown_and_malformed_ids(api: ApiClient) -> None:
    (await api.get(f"{DEVICES}/12345")).failure(404, "DEVICEOP_ERROR")
    (await api.delete(f"{DEVICES}/12345")).failure(404, "DEVICEOP_ERROR")
    (await api.patch(f"{DEVICES}/12345", {"name": "x"})).failure(404, "DEVICEOP_ERROR")
    message = (await api.get(f"{DEVICES}/not-a-number")).failure(400, "GENERAL_ERROR")
    assert "'device_id'" in message
    (await api.get(f"{DEVICES}/99999999999999999999")).failure(400, "GENERAL_ERROR")


async def test_list_pages_through_all_devices_in_id_order(api: ApiClient) -> None:
    ids = [(await api.register(name=f"d{i}"))["device_id"] for i in range(7)]
    seen = []
    for page in (1, 2, 3):
        answer = await api.get(DEVICES, params={"page": page, "per_page": 3})
        assert answer.data["total"] == 7
        assert answer.data["page"] == page and answer.data["per_page"] == 3
        seen += [d["device_id"] for d in answer.data["items"]]
    assert seen == sorted(ids, key=int)
    empty = await api.get(DEVICES, params={"page": 9, "per_page": 3})
    assert empty.data["items"] == [] and empty.data["total"] == 7


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"per_page": 501}, "per_page"),
        ({"per_page": 0}, "per_page"),
        ({"page": 0}, "page"),
        ({"page": "two"}, "page"),
        ({"state": "sleeping"}, "state"),
        ({"group": "abc"}, "group"),
    ],
)
async def test_bad_list_parameters_name_the_field(api: ApiClient, params: dict, field: str) -> None:
    message = (await api.get(DEVICES, params=params)).failure(400, "GENERAL_ERROR")
    assert f"'{field}'" in message


async def test_list_filters_by_type_state_group_and_text(api: ApiClient) -> None:
    cam = await api.register(name="North gate camera", type="camera", hardware_sn="CAM-001")
    gw = await api.register(name="Depot gateway", type="gateway", hardware_sn="GW-17")
    sensor = await api.register(name="Rail 100%_sensor", type="sensor", hardware_sn="RS-9")
    group = await api.create_group("gates")
    await api.put(f"/api/v1/groups/{group['group_id']}/devices/{cam['device_id']}")

    async def names(**params: str) -> list[str]:
        answer = await api.get(DEVICES, params=params)
        return sorted(d["name"] for d in answer.data["items"])

    assert await names(type="gateway") == ["Depot gateway"]
    assert await names(state="offline") == sorted([cam["name"], gw["name"], sensor["name"]])
    assert await names(state="online") == []
    assert await names(group=group["group_id"]) == ["North gate camera"]
    assert await names(q="gate") == ["Depot gateway", "North gate camera"]
    assert await names(q="GW-1") == ["Depot gateway"]  # serial number
    assert await names(q="100%_") == ["Rail 100%_sensor"]  # wildcards taken literally
    assert await names(q="e%") == []
    assert await names(q="gate", type="camera") == ["North gate camera"]


async def test_patch_changes_only_given_fields_and_logs_them(api: ApiClient) -> None:
    device = await api.register(name="old", wifi_mac="aa:aa:aa:aa:aa:aa", base_version="1.0")
    path = f"{DEVICES}/{device['device_id']}"
    answer = await api.patch(
        path,
        {"name": "new", "wifi_mac": None, "base_updated_at": "2026-11-22T18:00:00+08:00"},
    )
    changed = answer.data
    assert changed["name"] == "new"
    assert changed["wifi_mac"] is None
    assert changed["base_version"] == "1.0"
    assert changed["base_updated_at"] == "2026-11-22T10:00:00.000000Z"
    assert changed["updated_at"] >= device["updated_at"]
    assert (await api.get(path)).data == changed

    events = (await api.get(f"{path}/events", params={"event": "updated"})).data["items"]
    assert events[0]["detail"] == {"fields": ["base_updated_at", "name", "wifi_mac"]}


async def test_patch_rejects_null_for_required_fields_and_conflicts(api: ApiClient) -> None:
    first = await api.register(hardware_sn="A", hardware_model="M")
    await api.register(hardware_sn="B", hardware_model="M")
    path = f"{DEVICES}/{first['device_id']}"
    assert "'name'" in (await api.patch(path, {"name": None})).failure(400, "GENERAL_ERROR")
    (await api.patch(path, {"hardware_sn": "B"})).failure(409, "DEVICEOP_ERROR")
    assert (await api.get(path)).data["hardware_sn"] == "A"


async def test_password_change_is_hashed_and_never_echoed(api: ApiClient, store: Store) -> None:
    device = await api.register()
    path = f"{DEVICES}/{device['device_id']}"
    answer = await api.patch(path, {"password": "a new password!"})
    assert "password" not in answer.data
    secret = await stored_secret(store, device["device_id"])
    assert bcrypt.checkpw(b"a new password!", secret.encode())
    events = (await api.get(f"{path}/events", params={"event": "updated"})).data["items"]
    assert events[0]["detail"] == {"fields": ["password"]}


async def test_delete_removes_device_and_memberships_but_keeps_its_log(api: ApiClient) -> None:
    device = await api.register()
    group = await api.create_group("g")
    await api.put(f"/api/v1/groups/{group['group_id']}/devices/{device['device_id']}")
    path = f"{DEVICES}/{device['device_id']}"

    assert (await api.delete(path)).data == {"deleted": True}
    (await api.get(path)).failure(404, "DEVICEOP_ERROR")
    assert (await api.get(f"/api/v1/groups/{group['group_id']}")).data["device_count"] == 0
    assert await event_names(api, device["device_id"]) == ["registered", "group_joined", "deleted"]


async def test_pages_far_into_a_large_fleet_and_short_pages_count_right(api: ApiClient) -> None:
    """Page 3 of 500 skips 1,000 devices (its ids are found first), the last page
    is short (its total is not counted again), and a long answer goes compressed."""
    rows = "".join(f"d{i:04d},camera,SN-{i},M\n" for i in range(1010))
    imported = await api.request(
        "POST",
        "/api/v1/devices/import",
        data=f"name,type,hardware_sn,hardware_model\n{rows}".encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert imported.data["registered"] == 1010
    seen = []
    for page in (1, 2, 3):
        answer = await api.get(DEVICES, params={"page": page, "per_page": 500})
        assert answer.data["total"] == 1010
        seen += [d["device_id"] for d in answer.data["items"]]
    assert len(seen) == 1010 and seen == sorted(seen, key=int)
    first = await api.get(DEVICES, params={"per_page": 500})
    assert first.headers["Content-Encoding"] in ("gzip", "deflate")
    one = await api.get(DEVICES, params={"q": "d1009"})
    assert one.data["total"] == 1 and "Content-Encoding" not in one.headers  # short enough
    few = await api.get(DEVICES, params={"q": "d100", "per_page": 50})  # d1000 to d1009
    assert few.data["total"] == 10 and len(few.data["items"]) == 10
    beyond = await api.get(DEVICES, params={"q": "d100", "page": 2, "per_page": 50})
    assert beyond.data["items"] == [] and beyond.data["total"] == 10
