"""Signing in and out, and who the caller is (``controller.access.sign_in``).

Browsers: sign-in also sets the refresh token as a cookie that scripts cannot
read (HttpOnly), that is sent only over HTTPS (Secure; browsers treat
http://localhost as secure too), only to the auth endpoints (Path=/api/v1/auth),
and never with a request another site starts (SameSite=Strict). The console keeps
the short-lived access token in memory and refreshes it with the cookie.
"""

from __future__ import annotations

from aiohttp import web

from edgefleet.controller.access.sign_in import Session
from edgefleet.controller.access.tokens import InvalidToken
from edgefleet.controller.api.context import caller, context
from edgefleet.controller.api.endpoints import API_PREFIX, endpoints
from edgefleet.controller.api.routing import PRINCIPAL, RESPONSE_HOOKS
from edgefleet.controller.api.schemas import (
    ApiKey,
    BindingOut,
    EffectivePermission,
    LoggedOut,
    LoginRequest,
    Me,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
    User,
)

TAG = "auth"
COOKIE = "edgefleet_refresh"
COOKIE_PATH = f"{API_PREFIX}/auth"


def _answer(request: web.Request, session: Session) -> TokenPair:
    def set_cookie(response: web.StreamResponse) -> None:
        response.set_cookie(
            COOKIE,
            session.refresh_token,
            max_age=int(session.refresh_expires_in),
            path=COOKIE_PATH,
            secure=True,
            httponly=True,
            samesite="Strict",
        )

    request[RESPONSE_HOOKS].append(set_cookie)
    return TokenPair(
        access_token=session.access_token,
        expires_in=int(session.expires_in),
        refresh_token=session.refresh_token,
        user=User.of(session.user),
    )


def _presented(request: web.Request, body: RefreshRequest) -> str | None:
    return body.refresh_token or request.cookies.get(COOKIE)


@endpoints.post(
    "/auth/login",
    summary="Sign in with a user name and password: an access token and a refresh token",
    tag=TAG,
    public=True,
    errors=(400, 401, 429, 503),
)
async def login(request: web.Request, body: LoginRequest) -> TokenPair:
    session = await context(request).sign_in.login(caller(request), body.username, body.password)
    return _answer(request, session)


@endpoints.post(
    "/auth/refresh",
    summary="A new token pair for a refresh token (from the body or the cookie), "
    "which stops working; a reused one revokes every token of its sign-in",
    tag=TAG,
    public=True,
    errors=(400, 401, 503),
)
async def refresh(request: web.Request, body: RefreshRequest) -> TokenPair:
    presented = _presented(request, body)
    if not presented:
        raise InvalidToken("no refresh token: give refresh_token or the cookie")
    return _answer(request, await context(request).sign_in.refresh(caller(request), presented))


@endpoints.post(
    "/auth/logout",
    summary="Revoke the refresh token (from the body or the cookie) and clear the cookie",
    tag=TAG,
    public=True,
    errors=(400, 503),
)
async def logout(request: web.Request, body: RefreshRequest) -> LoggedOut:
    await context(request).sign_in.logout(caller(request), _presented(request, body))
    request[RESPONSE_HOOKS].append(
        lambda response: response.del_cookie(
            COOKIE, path=COOKIE_PATH, secure=True, httponly=True, samesite="Strict"
        )
    )
    return LoggedOut()


@endpoints.post(
    "/auth/register",
    summary="Create an account with the viewer role (only with --allow-registration)",
    tag=TAG,
    status=201,
    public=True,
    errors=(400, 403, 409, 429, 503),
)
async def register(request: web.Request, body: RegisterRequest) -> User:
    user = await context(request).sign_in.register(
        caller(request), body.username, body.password, body.email
    )
    return User.of(user)


@endpoints.get(
    "/auth/me",
    summary="The caller: user or API key, roles and bindings, effective permissions",
    tag=TAG,
    permission="authenticated",
)
async def me(request: web.Request) -> Me:
    principal = request[PRINCIPAL]
    store = context(request).store
    user = User.of(await store.users.get(principal.user_id)) if principal.user_id else None
    key = ApiKey.of(await store.api_keys.get(principal.id)) if principal.kind == "api_key" else None
    return Me(
        kind=principal.kind,
        name=principal.name,
        user=user,
        key=key,
        roles=[BindingOut(role=held.role, group_id=held.group_id) for held in principal.held],
        permissions=[
            EffectivePermission(
                permission=permission,
                everywhere=where is None,
                group_ids=sorted(where or ()),
            )
            for permission, where in sorted(principal.permissions.items())
        ],
    )
