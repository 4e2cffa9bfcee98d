"""Signing in: passwords, JWT access tokens, rotating refresh tokens, the cookie,
the bootstrap token, registration and the first administrator."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from edgefleet.controller.access.permissions import PERMISSIONS
from edgefleet.controller.access.tokens import JwtKeys
from edgefleet.controller.settings import AuthSettings
from edgefleet.controller.store import Store
from tests.api_client import TEST_AUTH, USER_PASSWORD, ApiClient, running_api

ME = "/api/v1/auth/me"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"


async def sign_in(api: ApiClient, username: str, password: str = USER_PASSWORD) -> dict:
    answer = await api.post(LOGIN, {"username": username, "password": password}, token=None)
    assert answer.status == 200, answer.body
    return answer.data


async def test_a_user_signs_in_and_the_access_token_identifies_it(api: ApiClient) -> None:
    await api.user("ana", [{"role": "viewer"}])
    pair = await sign_in(api, "ana")
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 900
    assert pair["user"]["username"] == "ana" and pair["user"]["last_login_at"]
    me = (await api.get(ME, token=pair["access_token"])).data
    assert me["kind"] == "user" and me["user"]["username"] == "ana"
    assert me["roles"] == [{"role": "viewer", "group_id": None}]
    held = {p["permission"]: p["everywhere"] for p in me["permissions"]}
    assert held == {"devices:read": True, "groups:read": True, "records:read": True}
    header = jwt.get_unverified_header(pair["access_token"])
    assert header["alg"] == "HS256" and header["kid"]


@pytest.mark.parametrize(("username", "password"), [("ana", "wrong password!"), ("nobody", "x")])
async def test_a_wrong_password_and_an_unknown_user_answer_the_same(
    api: ApiClient, username: str, password: str
) -> None:
    await api.user("ana", [{"role": "viewer"}])
    answer = await api.post(LOGIN, {"username": username, "password": password}, token=None)
    assert "wrong user name or password" in answer.failure(401, "AUTH_ERROR")


async def test_failed_sign_ins_are_limited_per_user_name(store: Store) -> None:
    auth = AuthSettings(jwt_key=TEST_AUTH.jwt_key, failures_per_user=3)
    async with running_api(store, "t", auth=auth) as api:
        await api.user("ana", [{"role": "viewer"}])
        for _ in range(3):
            bad = await api.post(LOGIN, {"username": "ana", "password": "nope"}, token=None)
            bad.failure(401, "AUTH_ERROR")
        refused = await api.post(LOGIN, {"username": "ana", "password": USER_PASSWORD}, token=None)
        assert "too many failed sign-ins" in refused.failure(429, "AUTH_ERROR")
        assert int(refused.headers["Retry-After"]) > 0
        # Another name from the same address is not limited by ana's failures.
        await api.user("bo", [{"role": "viewer"}])


async def test_failed_sign_ins_are_limited_per_source_address(store: Store) -> None:
    auth = AuthSettings(jwt_key=TEST_AUTH.jwt_key, failures_per_address=2)
    async with running_api(store, "t", auth=auth) as api:
        await api.user("ana", [{"role": "viewer"}])
        for name in ("x1", "x2"):
            (await api.post(LOGIN, {"username": name, "password": "p"}, token=None)).failure(
                401, "AUTH_ERROR"
            )
        refused = await api.post(LOGIN, {"username": "ana", "password": USER_PASSWORD}, token=None)
        refused.failure(429, "AUTH_ERROR")


async def test_an_expired_access_token_is_refused(api: ApiClient) -> None:
    user = await api.user("ana", [{"role": "viewer"}])
    me = (await user.get(ME)).data
    keys = JwtKeys(TEST_AUTH.jwt_key or "")
    claims = jwt.decode(user.token, options={"verify_signature": False})
    claims["exp"] = int(time.time()) - 5
    expired = jwt.encode(claims, TEST_AUTH.jwt_key, "HS256", headers={"kid": keys.kid})
    assert "expired" in (await api.get(ME, token=expired)).failure(401, "AUTH_ERROR")
    assert me["user"]["username"] == "ana"


async def test_a_token_used_before_is_refused_once_it_expires(api: ApiClient) -> None:
    """A token's signature is checked once; its expiry at every request."""
    user = await api.user("ana", [{"role": "viewer"}])
    keys = JwtKeys(TEST_AUTH.jwt_key or "")
    claims = jwt.decode(user.token, options={"verify_signature": False})
    claims["exp"] = int(time.time()) + 3
    short = jwt.encode(claims, TEST_AUTH.jwt_key, "HS256", headers={"kid": keys.kid})
    assert (await api.get(ME, token=short)).data["user"]["username"] == "ana"
    await asyncio.sleep(claims["exp"] - time.time() + 0.1)
    assert "expired" in (await api.get(ME, token=short)).failure(401, "AUTH_ERROR")


async def test_a_forged_or_foreign_token_is_refused(api: ApiClient) -> None:
    user = await api.user("ana", [{"role": "viewer"}])
    claims = jwt.decode(user.token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(user.token)["kid"]
    forged = jwt.encode(claims, "another-key-" * 4, "HS256", headers={"kid": kid})
    (await api.get(ME, token=forged)).failure(401, "AUTH_ERROR")
    unsigned = jwt.encode(claims, None, "none", headers={"kid": kid})
    (await api.get(ME, token=unsigned)).failure(401, "AUTH_ERROR")


async def test_rotating_the_signing_key_keeps_tokens_signed_with_the_old_one(
    store: Store,
) -> None:
    old, new = "old-key-0123456789-0123456789-0123", "new-key-0123456789-0123456789-0123"
    async with running_api(store, "t", auth=AuthSettings(jwt_key=old)) as api:
        user = await api.user("ana", [{"role": "viewer"}])
    rotated = AuthSettings(jwt_key=new, jwt_previous_keys=old)
    async with running_api(store, "t", auth=rotated) as api:
        assert (await api.get(ME, token=user.token)).status == 200
        fresh = await api.login("ana")
        assert jwt.get_unverified_header(fresh.token)["kid"] == JwtKeys(new).kid
    async with running_api(store, "t", auth=AuthSettings(jwt_key=new)) as api:
        (await api.get(ME, token=user.token)).failure(401, "AUTH_ERROR")


async def test_refresh_rotates_and_a_reused_token_revokes_the_whole_family(
    api: ApiClient,
) -> None:
    await api.user("ana", [{"role": "viewer"}])
    first = await sign_in(api, "ana")
    second = (await api.post(REFRESH, {"refresh_token": first["refresh_token"]}, token=None)).data
    assert second["refresh_token"] != first["refresh_token"]
    assert (await api.get(ME, token=second["access_token"])).status == 200
    # The first token was spent: presenting it again is theft, and ends the family.
    reused = await api.post(REFRESH, {"refresh_token": first["refresh_token"]}, token=None)
    assert "already used" in reused.failure(401, "AUTH_ERROR")
    stolen = await api.post(REFRESH, {"refresh_token": second["refresh_token"]}, token=None)
    stolen.failure(401, "AUTH_ERROR")
    # Another sign-in is another family, untouched.
    other = await sign_in(api, "ana")
    assert (
        await api.post(REFRESH, {"refresh_token": other["refresh_token"]}, token=None)
    ).status == 200


async def test_the_refresh_cookie_is_locked_down_and_usable_alone(api: ApiClient) -> None:
    await api.user("ana", [{"role": "viewer"}])
    async with api.session.post(
        api.base_url + LOGIN, json={"username": "ana", "password": USER_PASSWORD}
    ) as response:
        cookie = response.cookies["edgefleet_refresh"]
        pair = (await response.json())["data"]
    assert cookie.value == pair["refresh_token"]
    assert cookie["httponly"] and cookie["secure"]
    assert cookie["samesite"] == "Strict" and cookie["path"] == "/api/v1/auth"
    assert int(cookie["max-age"]) == 7 * 24 * 3600
    headers = {"Cookie": f"edgefleet_refresh={cookie.value}"}
    refreshed = await api.post(REFRESH, {}, token=None, headers=headers)
    assert refreshed.status == 200, refreshed.body
    out = await api.post(
        "/api/v1/auth/logout",
        {},
        token=None,
        headers={"Cookie": f"edgefleet_refresh={refreshed.data['refresh_token']}"},
    )
    assert out.status == 200
    assert 'edgefleet_refresh=""' in out.headers["Set-Cookie"]
    gone = await api.post(REFRESH, {"refresh_token": refreshed.data["refresh_token"]}, token=None)
    gone.failure(401, "AUTH_ERROR")


async def test_refresh_without_a_token_is_401(api: ApiClient) -> None:
    (await api.post(REFRESH, {}, token=None)).failure(401, "AUTH_ERROR")


async def test_a_disabled_user_is_signed_out_at_once(api: ApiClient) -> None:
    user = await api.user("ana", [{"role": "viewer"}])
    pair = await sign_in(api, "ana")
    me = (await user.get(ME)).data
    await api.patch(f"/api/v1/users/{me['user']['user_id']}", {"is_active": False})
    (await user.get(ME)).failure(401, "AUTH_ERROR")
    (await api.post(REFRESH, {"refresh_token": pair["refresh_token"]}, token=None)).failure(
        401, "AUTH_ERROR"
    )
    (await api.post(LOGIN, {"username": "ana", "password": USER_PASSWORD}, token=None)).failure(
        401, "AUTH_ERROR"
    )


async def test_the_bootstrap_token_acts_as_an_administrator(api: ApiClient) -> None:
    me = (await api.get(ME)).data
    assert me["kind"] == "bootstrap" and me["user"] is None
    assert all(p["everywhere"] for p in me["permissions"])
    assert {p["permission"] for p in me["permissions"]} == set(PERMISSIONS)
    assert (await api.get("/api/v1/users")).status == 200


async def test_registration_is_off_unless_allowed(store: Store, api: ApiClient) -> None:
    body = {"username": "newbie", "password": "long enough password"}
    refused = await api.post("/api/v1/auth/register", body, token=None)
    refused.failure(403, "AUTH_ERROR")
    auth = AuthSettings(jwt_key=TEST_AUTH.jwt_key, allow_registration=True)
    async with running_api(store, "t", auth=auth) as open_api:
        made = await open_api.post("/api/v1/auth/register", body, token=None)
        assert made.status == 201, made.body
        assert made.data["roles"] == [{"role": "viewer", "group_id": None}]
        viewer = await open_api.login("newbie", "long enough password")
        assert (await viewer.get("/api/v1/devices")).status == 200
        (await viewer.post("/api/v1/groups", {"name": "g"})).failure(403, "AUTH_ERROR")


async def test_the_first_administrator_comes_from_the_admin_password(store: Store) -> None:
    auth = AuthSettings(jwt_key=TEST_AUTH.jwt_key, admin_password="first admin password")
    async with running_api(store, "t", auth=auth) as api:
        admin = await api.login("admin", "first admin password")
        me = (await admin.get(ME)).data
        assert me["user"]["is_superuser"] and me["roles"] == [{"role": "admin", "group_id": None}]
    changed = AuthSettings(jwt_key=TEST_AUTH.jwt_key, admin_password="another password!")
    async with running_api(store, "t", auth=changed) as api:
        # Users exist now: the setting is ignored, the password stays.
        await api.login("admin", "first admin password")
        assert (await api.get("/api/v1/users")).data["total"] == 1


async def test_a_user_changes_its_own_password_with_the_old_one(api: ApiClient) -> None:
    user = await api.user("ana", [])
    wrong = await user.patch(
        "/api/v1/users/me", {"password": "a brand new password", "old_password": "nope"}
    )
    wrong.failure(403, "AUTH_ERROR")
    changed = await user.patch(
        "/api/v1/users/me",
        {"password": "a brand new password", "old_password": USER_PASSWORD, "email": "a@b.c"},
    )
    assert changed.data["email"] == "a@b.c"
    await api.login("ana", "a brand new password")
    (await api.post(LOGIN, {"username": "ana", "password": USER_PASSWORD}, token=None)).failure(
        401, "AUTH_ERROR"
    )
    # The bootstrap token is no user: it has no own password to change.
    (await api.patch("/api/v1/users/me", {"email": "x@y.z"})).failure(403, "AUTH_ERROR")
