"""Device groups: create, read, list, change, delete."""

from __future__ import annotations

from aiohttp import web

from edgefleet.controller.api.context import context
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
from edgefleet.controller.store import GroupConflict, GroupNotFound

TAG = "groups"


@endpoints.post("/groups", summary="Create a group", tag=TAG, status=201, errors=(409,))
async def create_group(request: web.Request, body: GroupCreate) -> Group:
    ctx = context(request)
    values = {**body.model_dump(), "group_id": ctx.ids.next_id()}
    values |= await ctx.mirror.group_created(values)
    try:
        row = await ctx.store.groups.create(values)
    except GroupConflict as conflict:
        # Kubernetes mode: the operator may have inserted this very group already.
        try:
            row = await ctx.store.groups.get(values["group_id"])
        except GroupNotFound:
            raise conflict from None
    return Group(**row)


@endpoints.get("/groups", summary="List groups, by name", tag=TAG)
async def list_groups(request: web.Request, query: GroupListQuery) -> Page[Group]:
    rows, total = await context(request).store.groups.list(query.q, query.page, query.per_page)
    return Page[Group].of(rows, total, query)


@endpoints.get("/groups/{group_id}", summary="Get a group", tag=TAG, errors=(404,))
async def get_group(request: web.Request, path: GroupPath) -> Group:
    return Group(**await context(request).store.groups.get(path.group_id))


@endpoints.patch("/groups/{group_id}", summary="Change a group", tag=TAG, errors=(404, 409))
async def update_group(request: web.Request, path: GroupPath, body: GroupUpdate) -> Group:
    ctx = context(request)
    changes = body.model_dump(exclude_unset=True)
    await ctx.mirror.group_changed(path.group_id, changes)
    return Group(**await ctx.store.groups.update(path.group_id, changes))


@endpoints.delete(
    "/groups/{group_id}", summary="Delete a group (its devices stay)", tag=TAG, errors=(404,)
)
async def delete_group(request: web.Request, path: GroupPath) -> Deleted:
    ctx = context(request)
    await ctx.mirror.group_deleted(path.group_id)
    await ctx.store.groups.delete(path.group_id)
    return Deleted()
