"""Users and their role bindings; the last administrator stays."""

from __future__ import annotations

from edgefleet.controller.access.permissions import PERMISSIONS
from tests.api_client import USER_PASSWORD, ApiClient


async def admin_user(api: ApiClient, name: str = "root") -> tuple[ApiClient, str]:
    client = await api.user(name, [{"role": "admin"}])
    me = (await client.get("/api/v1/auth/me")).data
    return client, me["user"]["user_id"]


async def test_an_admin_manages_users_and_the_password_never_shows(api: ApiClient) -> None:
    made = await api.post(
        "/api/v1/users",
        {"username": "ana", "email": "ana@example.com", "password": USER_PASSWORD,
         "roles": [{"role": "viewer"}]},
    )  # fmt: skip
    assert made.status == 201, made.body
    user = made.data
    assert "password" not in user and user["is_active"] and not user["is_superuser"]
    listed = (await api.get("/api/v1/users", params={"q": "an"})).data
    assert [u["username"] for u in listed["items"]] == ["ana"]
    changed = await api.patch(f"/api/v1/users/{user['user_id']}", {"email": None})
    assert changed.data["email"] is None
    (await api.post("/api/v1/users", {"username": "ana"})).failure(409, "USEROP_ERROR")
    assert (await api.delete(f"/api/v1/users/{user['user_id']}")).status == 200
    (await api.get(f"/api/v1/users/{user['user_id']}")).failure(404, "USEROP_ERROR")


async def test_bindings_are_replaced_whole_and_checked(api: ApiClient) -> None:
    group = await api.create_group("cams")
    user = (await api.post("/api/v1/users", {"username": "ana", "password": USER_PASSWORD})).data
    path = f"/api/v1/users/{user['user_id']}/roles"
    bound = await api.put(
        path, [{"role": "operator", "group_id": group["group_id"]}, {"role": "viewer"}]
    )
    assert sorted(bound.data["roles"], key=lambda b: b["role"]) == [
        {"role": "operator", "group_id": group["group_id"]},
        {"role": "viewer", "group_id": None},
    ]
    (await api.put(path, [{"role": "nosuch"}])).failure(404, "ROLEOP_ERROR")
    (await api.put(path, [{"role": "viewer", "group_id": "42"}])).failure(404, "GROUPOP_ERROR")
    assert (await api.put(path, [])).data["roles"] == []


async def test_a_new_binding_takes_effect_at_the_next_request(api: ApiClient) -> None:
    ana = await api.user("ana", [])
    (await ana.get("/api/v1/devices")).failure(403, "AUTH_ERROR")
    me = (await ana.get("/api/v1/auth/me")).data["user"]
    await api.put(f"/api/v1/users/{me['user_id']}/roles", [{"role": "viewer"}])
    assert (await ana.get("/api/v1/devices")).status == 200


async def test_the_last_active_administrator_cannot_be_removed_or_demoted(
    api: ApiClient,
) -> None:
    root, root_id = await admin_user(api)
    path = f"/api/v1/users/{root_id}"
    (await root.delete(path)).failure(409, "USEROP_ERROR")
    (await root.patch(path, {"is_active": False})).failure(409, "USEROP_ERROR")
    (await root.put(f"{path}/roles", [{"role": "viewer"}])).failure(409, "USEROP_ERROR")
    # With a second administrator, the first may go.
    _, second_id = await admin_user(api, "second")
    assert (await root.put(f"{path}/roles", [{"role": "viewer"}])).status == 200
    (await api.delete(f"/api/v1/users/{second_id}")).failure(409, "USEROP_ERROR")


async def test_a_service_account_cannot_sign_in(api: ApiClient) -> None:
    made = await api.post("/api/v1/users", {"username": "svc", "roles": [{"role": "viewer"}]})
    assert made.status == 201
    answer = await api.post(
        "/api/v1/auth/login", {"username": "svc", "password": "anything at all"}, token=None
    )
    answer.failure(401, "AUTH_ERROR")


async def test_roles_are_created_changed_and_deleted_unless_built_in_or_bound(
    api: ApiClient,
) -> None:
    roles = {r["code"]: r for r in (await api.get("/api/v1/roles")).data["items"]}
    assert set(roles) == {"admin", "operator", "viewer"}
    assert roles["admin"]["permissions"] == list(PERMISSIONS) and roles["admin"]["builtin"]
    made = await api.post(
        "/api/v1/roles",
        {"code": "vendor", "name": "Vendor", "permissions": ["devices:read", "commands:send"]},
    )
    assert made.status == 201, made.body
    role = made.data
    (await api.post("/api/v1/roles", {"code": "vendor", "name": "x", "permissions": [
        "devices:read"]})).failure(409, "ROLEOP_ERROR")  # fmt: skip
    bad = await api.post("/api/v1/roles", {"code": "x", "name": "x", "permissions": ["fly"]})
    bad.failure(400, "GENERAL_ERROR")
    await api.user("ven", [{"role": "vendor"}])
    (await api.delete(f"/api/v1/roles/{role['role_id']}")).failure(409, "ROLEOP_ERROR")
    viewer_id = roles["viewer"]["role_id"]
    (await api.delete(f"/api/v1/roles/{viewer_id}")).failure(409, "ROLEOP_ERROR")
    (await api.patch(f"/api/v1/roles/{viewer_id}", {"permissions": []})).failure(
        400, "GENERAL_ERROR"
    )
    admin_id = roles["admin"]["role_id"]
    (await api.patch(f"/api/v1/roles/{admin_id}", {"permissions": ["devices:read"]})).failure(
        409, "ROLEOP_ERROR"
    )
    narrowed = await api.patch(f"/api/v1/roles/{viewer_id}", {"permissions": ["devices:read"]})
    assert narrowed.data["permissions"] == ["devices:read"]
    unbound = await api.post("/api/v1/roles", {"code": "tmp", "name": "T", "permissions": [
        "audit:read"]})  # fmt: skip
    assert (await api.delete(f"/api/v1/roles/{unbound.data['role_id']}")).status == 200


async def test_records_config_and_jobs_permissions_exist_before_their_routes(
    api: ApiClient,
) -> None:
    made = await api.post(
        "/api/v1/roles",
        {"code": "data", "name": "Data",
         "permissions": ["records:read", "config:write", "jobs:write"]},
    )  # fmt: skip
    assert made.status == 201, made.body
