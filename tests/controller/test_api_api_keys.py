"""API keys: shown once, stored as digests, limited to their maker's rights,
revoked at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.api_client import ApiClient
from tests.conftest import eventually

KEYS = "/api/v1/api-keys"


async def test_a_key_is_shown_once_and_authenticates(api: ApiClient) -> None:
    ana = await api.user("ana", [{"role": "viewer"}])
    made = await ana.post(KEYS, {"name": "dashboard"})
    assert made.status == 201, made.body
    key = made.data["key"]
    assert key.startswith("efk_") and made.data["prefix"] == key[:12]
    assert made.data["roles"] == [{"role": "viewer", "group_id": None}]
    listed = (await ana.get(KEYS)).data["items"]
    assert [k["name"] for k in listed] == ["dashboard"] and "key" not in listed[0]
    service = ana.as_(key)
    me = (await service.get("/api/v1/auth/me")).data
    assert me["kind"] == "api_key" and me["key"]["name"] == "dashboard"
    assert me["user"]["username"] == "ana"
    assert (await service.get("/api/v1/devices")).status == 200
    (await service.post("/api/v1/groups", {"name": "g"})).failure(403, "AUTH_ERROR")
    used = (await ana.get(KEYS)).data["items"][0]
    assert used["last_used_at"] is not None


async def test_revocation_takes_effect_at_once(api: ApiClient) -> None:
    made = (await api.post(KEYS, {"name": "svc", "user_id": await service_account(api)})).data
    service = api.as_(made["key"])
    assert (await service.get("/api/v1/devices")).status == 200
    revoked = await api.delete(f"{KEYS}/{made['key_id']}")
    assert revoked.data["revoked_at"] is not None
    assert "revoked" in (await service.get("/api/v1/devices")).failure(401, "AUTH_ERROR")


async def service_account(api: ApiClient) -> str:
    made = await api.post("/api/v1/users", {"username": "svc", "roles": [{"role": "operator"}]})
    return made.data["user_id"]


async def test_a_key_never_holds_more_than_its_maker(api: ApiClient) -> None:
    group = await api.create_group("cams")
    ana = await api.user("ana", [{"role": "operator", "group_id": group["group_id"]}])
    (await ana.post(KEYS, {"name": "k", "roles": [{"role": "operator"}]})).failure(
        403, "AUTH_ERROR"
    )
    (await ana.post(KEYS, {"name": "k", "roles": [{"role": "admin",
        "group_id": group["group_id"]}]})).failure(403, "AUTH_ERROR")  # fmt: skip
    scoped = await ana.post(
        KEYS, {"name": "k", "roles": [{"role": "viewer", "group_id": group["group_id"]}]}
    )
    assert scoped.status == 201, scoped.body
    # Keys for someone else are an administrator's.
    other = await service_account(api)
    (await ana.post(KEYS, {"name": "k", "user_id": other})).failure(403, "AUTH_ERROR")


async def test_a_key_loses_what_its_owner_loses(api: ApiClient) -> None:
    owner = await service_account(api)
    key = (await api.post(KEYS, {"name": "k", "user_id": owner})).data["key"]
    service = api.as_(key)
    assert (await service.post("/api/v1/groups", {"name": "g1"})).status == 201
    await api.put(f"/api/v1/users/{owner}/roles", [{"role": "viewer"}])
    (await service.post("/api/v1/groups", {"name": "g2"})).failure(403, "AUTH_ERROR")
    await api.patch(f"/api/v1/users/{owner}", {"is_active": False})
    (await service.get("/api/v1/devices")).failure(401, "AUTH_ERROR")


async def test_an_expired_key_is_refused(api: ApiClient) -> None:
    """A key works until its expiry and is refused from then on, cached or not.
    Three seconds leave a busy machine time for the first request."""
    owner = await service_account(api)
    soon = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    key = (await api.post(KEYS, {"name": "k", "user_id": owner, "expires_at": soon})).data["key"]
    service = api.as_(key)
    assert (await service.get("/api/v1/devices")).status == 200

    async def refused() -> str | None:
        answer = await service.get("/api/v1/devices")
        return answer.failure(401, "AUTH_ERROR") if answer.status == 401 else None

    assert "expired" in await eventually(refused)


async def test_a_wrong_or_malformed_key_is_refused(api: ApiClient) -> None:
    owner = await service_account(api)
    key = (await api.post(KEYS, {"name": "k", "user_id": owner})).data["key"]
    for wrong in (key[:-1] + ("A" if key[-1] != "A" else "B"), "efk_short", "efk_abcdefgh_x"):
        (await api.get("/api/v1/devices", token=wrong)).failure(401, "AUTH_ERROR")


async def test_others_keys_are_an_administrators_business(api: ApiClient) -> None:
    ana = await api.user("ana", [{"role": "viewer"}])
    bo = await api.user("bo", [{"role": "viewer"}])
    key = (await ana.post(KEYS, {"name": "k"})).data
    (await bo.delete(f"{KEYS}/{key['key_id']}")).failure(404, "KEYOP_ERROR")
    (await bo.get(KEYS, params={"all": "true"})).failure(403, "AUTH_ERROR")
    everyone = (await api.get(KEYS, params={"all": "true"})).data
    assert [k["key_id"] for k in everyone["items"]] == [key["key_id"]]
