"""Device registration, reads, lists, changes and deletion."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from edgefleet.controller.api.context import ApiContext, context
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.schemas import (
    Deleted,
    Device,
    DeviceCreate,
    DeviceListQuery,
    DevicePath,
    DeviceUpdate,
    Page,
    RegisteredDevice,
)
from edgefleet.controller.passwords import generate_password, hash_password
from edgefleet.controller.store import DeviceConflict, DeviceFilter, DeviceNotFound

TAG = "devices"


@endpoints.post(
    "/devices",
    summary="Register a device; the answer holds its password, once",
    tag=TAG,
    status=201,
    errors=(409,),
)
async def register_device(request: web.Request, body: DeviceCreate) -> RegisteredDevice:
    ctx = context(request)
    values = body.model_dump(exclude={"password"})
    password = body.password or generate_password()
    values["secret"] = await hash_password(password, ctx.settings.bcrypt_rounds)
    values["device_id"] = ctx.ids.next_id()
    values |= await ctx.mirror.device_created(values, password)
    try:
        row = await ctx.store.devices.create(values)
    except DeviceConflict as conflict:
        # Kubernetes mode: the operator may have inserted this very device already.
        row = await _created_meanwhile(ctx, values["device_id"], conflict)
    return RegisteredDevice(**row, password=password)


async def _created_meanwhile(
    ctx: ApiContext, device_id: int, conflict: DeviceConflict
) -> dict[str, Any]:
    try:
        return await ctx.store.devices.get(device_id)
    except DeviceNotFound:
        raise conflict from None


@endpoints.get("/devices", summary="List devices, filtered and paged", tag=TAG)
async def list_devices(request: web.Request, query: DeviceListQuery) -> Page[Device]:
    where = DeviceFilter(state=query.state, type=query.type, group_id=query.group, text=query.q)
    rows, total = await context(request).store.devices.list(where, query.page, query.per_page)
    return Page[Device].of(rows, total, query)


@endpoints.get("/devices/{device_id}", summary="Get a device", tag=TAG, errors=(404,))
async def get_device(request: web.Request, path: DevicePath) -> Device:
    return Device(**await context(request).store.devices.get(path.device_id))


@endpoints.patch("/devices/{device_id}", summary="Change a device", tag=TAG, errors=(404, 409))
async def update_device(request: web.Request, path: DevicePath, body: DeviceUpdate) -> Device:
    ctx = context(request)
    changes = body.model_dump(exclude_unset=True, exclude={"password"})
    password = body.password if "password" in body.model_fields_set else None
    await ctx.mirror.device_changed(path.device_id, changes, password)
    if password is not None:
        changes["secret"] = await hash_password(password, ctx.settings.bcrypt_rounds)
    device = Device(**await ctx.store.devices.update(path.device_id, changes))
    if changes.get("disabled"):
        await ctx.link.disconnect(path.device_id, "disabled")
    return device


@endpoints.delete(
    "/devices/{device_id}", summary="Delete a device and end its session", tag=TAG, errors=(404,)
)
async def delete_device(request: web.Request, path: DevicePath) -> Deleted:
    ctx = context(request)
    await ctx.mirror.device_deleted(path.device_id)
    await ctx.store.devices.delete(path.device_id)
    await ctx.link.disconnect(path.device_id, "deleted")
    return Deleted()
