"""API keys for services: made by a user for itself, or by an admin for anyone."""

from __future__ import annotations

from aiohttp import web

from edgefleet.controller.access.principal import AccessDenied
from edgefleet.controller.api.context import caller, context
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.routing import PRINCIPAL
from edgefleet.controller.api.schemas import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyListQuery,
    KeyPath,
    NewApiKey,
    Page,
)
from edgefleet.controller.api.users import bindings

TAG = "api-keys"


@endpoints.get(
    "/api-keys",
    summary="Your API keys; with users:admin, anyone's (user_id) or everyone's (all)",
    tag=TAG,
    errors=(403,),
    permission="authenticated",
)
async def list_api_keys(request: web.Request, query: ApiKeyListQuery) -> Page[ApiKey]:
    principal = request[PRINCIPAL]
    owner = query.user_id or principal.user_id
    if query.all or owner != principal.user_id or principal.kind != "user":
        if not principal.may("users:admin"):
            raise AccessDenied("users:admin")
    owner = None if query.all else owner
    rows, total = await context(request).store.api_keys.list(owner, query.page, query.per_page)
    return Page[ApiKey](
        items=[ApiKey.of(row) for row in rows],
        page=query.page,
        per_page=query.per_page,
        total=total,
    )


@endpoints.post(
    "/api-keys",
    summary="Create an API key; the answer holds the key, once",
    tag=TAG,
    status=201,
    errors=(403, 404),
    permission="authenticated",
)
async def create_api_key(request: web.Request, body: ApiKeyCreate) -> NewApiKey:
    roles = None if body.roles is None else bindings(body.roles)
    row, key = await context(request).accounts.create_key(
        caller(request), body.name, body.user_id, roles, body.expires_at
    )
    return NewApiKey(**ApiKey.of(row).model_dump(), key=key)


@endpoints.delete(
    "/api-keys/{key_id}",
    summary="Revoke an API key: it stops working at once",
    tag=TAG,
    errors=(404,),
    permission="authenticated",
)
async def revoke_api_key(request: web.Request, path: KeyPath) -> ApiKey:
    return ApiKey.of(await context(request).accounts.revoke_key(caller(request), path.key_id))
