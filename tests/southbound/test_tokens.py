"""Session tokens: what a token is good for, as plain calls with the time passed in,
then as devices see them at the real southbound (SQLite and MariaDB)."""

from __future__ import annotations

import json
from dataclasses import replace

from edgefleet.agent import protocol
from edgefleet.controller.store import Store
from edgefleet.southbound.tokens import TokenSigner
from tests.southbound.conftest import FAST, Fleet, recv_json, running_fleet

KEY = b"k" * 32


def test_a_token_is_good_for_its_device_and_version_until_it_expires() -> None:
    signer = TokenSigner(KEY, ttl=3600)
    token, expires = signer.issue(42, 3, now=1000.0)
    assert expires == 4600.0
    assert signer.valid(token, 42, 3, now=4599.0)
    assert not signer.valid(token, 42, 3, now=4600.0)  # expired
    assert not signer.valid(token, 43, 3, now=1001.0)  # another device's
    assert not signer.valid(token, 42, 4, now=1001.0)  # issued before the password changed


def test_a_token_from_another_key_or_altered_is_refused() -> None:
    signer = TokenSigner(KEY, ttl=3600)
    token, _ = signer.issue(42, 3, now=1000.0)
    assert not TokenSigner(b"another key" * 3, ttl=3600).valid(token, 42, 3, now=1001.0)
    device, version, expires, signature = token.split(".")
    for forged in (
        f"{device}.{version}.{int(expires) + 10**6}.{signature}",  # a longer life
        f"43.{version}.{expires}.{signature}",  # another device
        f"{device}.{version}.{expires}.{signature[:-1]}",  # a clipped signature
        f"{device}.{version}.{expires}",  # no signature
        "é" + token,  # not ASCII
    ):
        assert not signer.valid(forged, 42, 3, now=1001.0), forged


async def token_login(fleet: Fleet, device_id: str, token: str) -> dict:
    ws = await fleet.connect()
    await ws.send(json.dumps({"device_id": device_id, "token": token}))
    answer = await recv_json(ws)
    await ws.close()
    return answer


async def issued(fleet: Fleet, device: dict) -> str:
    """A password login's token (the session then closed)."""
    ws, answer = await fleet.login(device)
    await ws.close()
    return str(answer["data"]["token"])


async def test_a_token_past_its_ttl_is_refused(store: Store) -> None:
    """``--token-ttl 0``: every token is expired once issued."""
    async with running_fleet(store, replace(FAST, token_ttl=0)) as fleet:
        device = await fleet.register()
        token = await issued(fleet, device)
        refused = await token_login(fleet, device["device_id"], token)
        assert refused == {"status": "fail", "message": protocol.MSG_BAD_TOKEN}


async def test_a_token_does_not_log_in_another_device(fleet: Fleet) -> None:
    device, other = await fleet.register(), await fleet.register()
    token = await issued(fleet, device)
    refused = await token_login(fleet, other["device_id"], token)
    assert refused == {"status": "fail", "message": protocol.MSG_BAD_TOKEN}
    assert (await token_login(fleet, device["device_id"], token))["status"] == "success"


async def test_a_deleted_devices_token_is_refused(fleet: Fleet) -> None:
    device = await fleet.register()
    token = await issued(fleet, device)
    assert (await fleet.api.delete(f"/api/v1/devices/{device['device_id']}")).status == 200
    refused = await token_login(fleet, device["device_id"], token)
    assert refused == {"status": "fail", "message": protocol.MSG_UNKNOWN_DEVICE}


async def test_a_disabled_devices_token_stays_refused_once_enabled_again(fleet: Fleet) -> None:
    device = await fleet.register()
    token = await issued(fleet, device)
    path = f"/api/v1/devices/{device['device_id']}"
    await fleet.api.patch(path, {"disabled": True})
    refused = await token_login(fleet, device["device_id"], token)
    assert refused == {"status": "fail", "message": protocol.MSG_BAD_TOKEN}
    await fleet.api.patch(path, {"disabled": False})
    again = await token_login(fleet, device["device_id"], token)
    assert again == {"status": "fail", "message": protocol.MSG_BAD_TOKEN}
    assert await issued(fleet, device)  # the password still logs it in
