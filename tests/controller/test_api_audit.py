"""The audit log: every mutating route writes an entry (walked over the OpenAPI
document), failures too, in the change's transaction, and never a secret."""

from __future__ import annotations

import uuid

from edgefleet.controller.store import Store
from tests.api_client import USER_PASSWORD, ApiClient
from tests.controller.access_world import World, operations

AUDIT = "/api/v1/audit"
# POST only because they carry a body: asking for the classification of one's own
# image changes nothing in the fleet (the requests are counted in classify stats).
NOT_CHANGES = {"check_cache", "classify"}


async def entries_of(api: ApiClient, request_id: str) -> list[dict]:
    items = (await api.get(AUDIT, params={"per_page": 500})).data["items"]
    return [item for item in items if item["request_id"] == request_id]


async def test_every_mutating_route_writes_an_audit_entry(store: Store, api: ApiClient) -> None:
    missing = []
    for operation in operations():
        if not operation.mutating or operation.operation_id in NOT_CHANGES:
            continue
        world = await World.build(api)
        request_id = f"walk-{uuid.uuid4().hex[:12]}"
        caller = api
        if operation.operation_id == "update_me":
            caller = await api.login(
                (await api.get(f"/api/v1/users/{world.user_id}")).data["username"]
            )
        answer = await world.call(operation, caller, headers={"X-Request-ID": request_id})
        assert answer.status < 500, (operation, answer.body)
        found = await entries_of(api, request_id)
        if len(found) != 1:
            missing.append((operation.method, operation.path, answer.status, found))
            continue
        [entry] = found
        assert entry["action"] == operation.operation_id, entry
        assert entry["http_status"] == answer.status, (operation, entry, answer.body)
        assert entry["result"] == ("success" if answer.status < 300 else "failure"), entry
    assert missing == []


async def test_an_entry_says_who_what_where_and_which_fields(api: ApiClient) -> None:
    ana = await api.user("ana", [{"role": "operator"}])
    device = await ana.register()
    renamed = await ana.patch(
        f"/api/v1/devices/{device['device_id']}",
        {"name": "gate", "password": "a new device password"},
        headers={"X-Request-ID": "rename-1"},
    )
    assert renamed.status == 200
    [entry] = await entries_of(api, "rename-1")
    assert entry["actor_type"] == "user" and entry["actor_name"] == "ana"
    assert entry["action"] == "update_device"
    assert (entry["target_type"], entry["target_id"]) == ("device", device["device_id"])
    assert entry["fields"] == ["name", "password"]
    assert entry["source_address"] == "127.0.0.1"
    assert (entry["result"], entry["error_type"], entry["http_status"]) == ("success", None, 200)
    listed = await api.get(AUDIT, params={"target": f"device:{device['device_id']}"})
    assert [e["action"] for e in listed.data["items"]] == ["update_device", "register_device"]


async def test_failures_are_audited_with_their_error_type(api: ApiClient) -> None:
    limited = await api.user("limited", [{"role": "viewer"}])
    refused = await limited.post(
        "/api/v1/groups", {"name": "g"}, headers={"X-Request-ID": "refused-1"}
    )
    refused.failure(403, "AUTH_ERROR")
    missing = await api.delete("/api/v1/devices/42", headers={"X-Request-ID": "missing-1"})
    missing.failure(404, "DEVICEOP_ERROR")
    [denied] = await entries_of(api, "refused-1")
    assert (denied["result"], denied["error_type"], denied["http_status"]) == (
        "failure", "AUTH_ERROR", 403
    )  # fmt: skip
    [absent] = await entries_of(api, "missing-1")
    assert (absent["error_type"], absent["http_status"]) == ("DEVICEOP_ERROR", 404)


async def test_sign_ins_are_audited_and_no_secret_is_ever_written(
    store: Store, api: ApiClient
) -> None:
    await api.user("ana", [], password=USER_PASSWORD)
    await api.post("/api/v1/auth/login", {"username": "ana", "password": "wrong!"}, token=None)
    device = await api.register(password="device password 1")
    key = await api.post("/api/v1/api-keys", {"name": "k", "user_id": device["device_id"]})
    assert key.status == 404  # no such user: audited as a failure, nothing leaks either
    items = (await api.get(AUDIT, params={"action": "login"})).data["items"]
    assert [(i["actor_name"], i["result"]) for i in items] == [
        ("ana", "failure"),
        ("ana", "success"),
    ]
    everything = str((await api.get(AUDIT, params={"per_page": 500})).data)
    for secret in (USER_PASSWORD, "wrong!", "device password 1", api.token):
        assert secret not in everything


async def test_the_audit_log_filters_and_pages(api: ApiClient) -> None:
    for name in ("g1", "g2", "g3"):
        await api.create_group(name)
    page = (await api.get(AUDIT, params={"action": "create_group", "per_page": 2})).data
    assert page["total"] == 3 and len(page["items"]) == 2
    by_actor = await api.get(AUDIT, params={"actor": "bootstrap", "action": "create_group"})
    assert by_actor.data["total"] == 3
    assert (await api.get(AUDIT, params={"actor": "nobody"})).data["total"] == 0
    later = await api.get(AUDIT, params={"since": "2999-01-01T00:00:00Z"})
    assert later.data["total"] == 0


async def test_a_change_and_its_entry_commit_together(store: Store, api: ApiClient) -> None:
    """A conflict rolls the change back: only the failure entry remains."""
    await api.create_group("same")
    conflict = await api.post("/api/v1/groups", {"name": "same"}, headers={"X-Request-ID": "dup"})
    conflict.failure(409, "GROUPOP_ERROR")
    [entry] = await entries_of(api, "dup")
    assert entry["result"] == "failure"
    assert (await api.get("/api/v1/groups")).data["total"] == 1


async def test_behind_a_proxy_the_source_is_the_address_the_proxy_saw(store: Store) -> None:
    from edgefleet.controller.settings import AuthSettings
    from tests.api_client import TEST_AUTH, running_api

    trusting = AuthSettings(jwt_key=TEST_AUTH.jwt_key, trust_forwarded_for=True)
    async with running_api(store, "t", auth=trusting) as api:
        spoofed_then_real = {"X-Forwarded-For": "10.9.9.9, 203.0.113.7", "X-Request-ID": "fwd"}
        await api.post("/api/v1/groups", {"name": "g"}, headers=spoofed_then_real)
        [entry] = await entries_of(api, "fwd")
    assert entry["source_address"] == "203.0.113.7"
