"""Roles: named lists of permissions (``controller.access.permissions``)."""

from __future__ import annotations

from aiohttp import web

from edgefleet.controller.api.context import caller, context
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.schemas import (
    Deleted,
    Role,
    RoleCreate,
    RoleList,
    RolePath,
    RoleUpdate,
)

TAG = "roles"
ADMIN = "users:admin"


@endpoints.get("/roles", summary="List roles with their permissions", tag=TAG, permission=ADMIN)
async def list_roles(request: web.Request) -> RoleList:
    return RoleList(items=await context(request).store.roles.list())


@endpoints.post(
    "/roles", summary="Create a role", tag=TAG, status=201, errors=(409,), permission=ADMIN
)
async def create_role(request: web.Request, body: RoleCreate) -> Role:
    return Role(**await context(request).accounts.create_role(caller(request), body.model_dump()))


@endpoints.patch(
    "/roles/{role_id}",
    summary="Change a role (admin cannot change; built-in roles cannot be emptied)",
    tag=TAG,
    errors=(404, 409),
    permission=ADMIN,
)
async def update_role(request: web.Request, path: RolePath, body: RoleUpdate) -> Role:
    changes = body.model_dump(exclude_unset=True)
    accounts = context(request).accounts
    return Role(**await accounts.update_role(caller(request), path.role_id, changes))


@endpoints.delete(
    "/roles/{role_id}",
    summary="Delete a role; a built-in role, or one still bound, answers 409",
    tag=TAG,
    errors=(404, 409),
    permission=ADMIN,
)
async def delete_role(request: web.Request, path: RolePath) -> Deleted:
    await context(request).accounts.delete_role(caller(request), path.role_id)
    return Deleted()
