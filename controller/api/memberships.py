"""Which devices are in which groups, seen from either side."""

from __future__ import annotations

from aiohttp import web

from edgefleet.controller.api.context import caller, context, scope
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.schemas import (
    ClearGroupQuery,
    Device,
    DevicePath,
    GroupIds,
    GroupList,
    GroupPath,
    MemberPath,
    Membership,
    Page,
    PageQuery,
    Removed,
)
from edgefleet.controller.store import DeviceFilter

TAG = "memberships"


@endpoints.get(
    "/devices/{device_id}/groups",
    summary="The groups of a device",
    tag=TAG,
    errors=(404,),
    permission="devices:read",
)
async def list_device_groups(request: web.Request, path: DevicePath) -> GroupList:
    rows = await context(request).store.groups.of_device(path.device_id, scope(request))
    return GroupList(items=rows)


@endpoints.put(
    "/devices/{device_id}/groups",
    summary="Make a device's groups exactly these (unknown groups change nothing)",
    tag=TAG,
    errors=(404,),
    permission="groups:write",
)
async def replace_device_groups(
    request: web.Request, path: DevicePath, body: GroupIds
) -> GroupList:
    writes = context(request).writes
    rows = await writes.replace_groups(caller(request), path.device_id, body.group_ids)
    return GroupList(items=rows)


@endpoints.delete(
    "/devices/{device_id}/groups",
    summary="Take a device out of all its groups",
    tag=TAG,
    errors=(404,),
    permission="groups:write",
)
async def remove_device_groups(request: web.Request, path: DevicePath) -> Removed:
    writes = context(request).writes
    return Removed(removed=await writes.leave_all_groups(caller(request), path.device_id))


@endpoints.get(
    "/groups/{group_id}/devices",
    summary="The devices of a group, paged",
    tag=TAG,
    errors=(404,),
    permission="devices:read",
)
async def list_group_devices(
    request: web.Request, path: GroupPath, query: PageQuery
) -> Page[Device]:
    store = context(request).store
    where = scope(request)
    await store.groups.get(path.group_id, where)
    rows, total = await store.devices.list(
        DeviceFilter(group_id=path.group_id, scope=where), query.page, query.per_page
    )
    return Page[Device].of(rows, total, query)


@endpoints.delete(
    "/groups/{group_id}/devices",
    summary="Empty a group; with delete_devices=true its devices are deleted too "
    "(which also needs devices:write)",
    tag=TAG,
    errors=(404,),
    permission="groups:write",
)
async def clear_group(request: web.Request, path: GroupPath, query: ClearGroupQuery) -> Removed:
    writes = context(request).writes
    removed, deleted = await writes.clear_group(
        caller(request), path.group_id, query.delete_devices
    )
    return Removed(removed=removed, deleted_devices=deleted)


@endpoints.get(
    "/groups/{group_id}/devices/{device_id}",
    summary="Is the device in the group",
    tag=TAG,
    errors=(404,),
    permission="groups:read",
)
async def get_membership(request: web.Request, path: MemberPath) -> Membership:
    groups = context(request).store.groups
    member = await groups.is_member(path.group_id, path.device_id, scope(request))
    return Membership(member=member)


@endpoints.put(
    "/groups/{group_id}/devices/{device_id}",
    summary="Put the device in the group",
    tag=TAG,
    errors=(404, 409),
    permission="groups:write",
)
async def add_membership(request: web.Request, path: MemberPath) -> Membership:
    await context(request).writes.add_member(caller(request), path.group_id, path.device_id)
    return Membership(member=True)


@endpoints.delete(
    "/groups/{group_id}/devices/{device_id}",
    summary="Take the device out of the group",
    tag=TAG,
    errors=(404, 409),
    permission="groups:write",
)
async def remove_membership(request: web.Request, path: MemberPath) -> Membership:
    await context(request).writes.remove_member(caller(request), path.group_id, path.device_id)
    return Membership(member=False)
