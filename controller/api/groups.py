"""Device groups: create, read, list, change, delete."""

from __future__ import annotations

from aiohttp import web

from edgefleet.controller.api.context import caller, context, scope
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.schemas import (
    Deleted,
    Group,
    GroupCreate,
    GroupListQuery,
    GroupPath,
    GroupUpdate,
    Page,
)

TAG = "groups"


@endpoints.post(
    "/groups",
    summary="Create a group",
    tag=TAG,
    status=201,
    errors=(409,),
    permission="groups:write",
)
async def create_group(request: web.Request, body: GroupCreate) -> Group:
    return Group(**await context(request).writes.create_group(caller(request), body.model_dump()))


@endpoints.get("/groups", summary="List groups, by name", tag=TAG, permission="groups:read")
async def list_groups(request: web.Request, query: GroupListQuery) -> Page[Group]:
    rows, total = await context(request).store.groups.list(
        query.q, query.page, query.per_page, scope(request)
    )
    return Page[Group].of(rows, total, query)


@endpoints.get(
    "/groups/{group_id}", summary="Get a group", tag=TAG, errors=(404,), permission="groups:read"
)
async def get_group(request: web.Request, path: GroupPath) -> Group:
    return Group(**await context(request).store.groups.get(path.group_id, scope(request)))


@endpoints.patch(
    "/groups/{group_id}",
    summary="Change a group",
    tag=TAG,
    errors=(404, 409),
    permission="groups:write",
)
async def update_group(request: web.Request, path: GroupPath, body: GroupUpdate) -> Group:
    changes = body.model_dump(exclude_unset=True)
    writes = context(request).writes
    return Group(**await writes.update_group(caller(request), path.group_id, changes))


@endpoints.delete(
    "/groups/{group_id}",
    summary="Delete a group (its devices stay)",
    tag=TAG,
    errors=(404,),
    permission="groups:write",
)
async def delete_group(request: web.Request, path: GroupPath) -> Deleted:
    await context(request).writes.delete_group(caller(request), path.group_id)
    return Deleted()
