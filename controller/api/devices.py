"""Device registration, reads, lists, changes and deletion."""

from __future__ import annotations

from aiohttp import web

from edgefleet.controller.api.context import context
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
from edgefleet.controller.store import DeviceFilter

TAG = "devices"


@endpoints.post(
    "/devices",
    summary="Register a device; the answer holds its password, once",
    tag=TAG,
    status=201,
    errors=(409,),
)
async def register_device(request: web.Request, body: DeviceCreate) -> RegisteredDevice:
    values = body.model_dump(exclude={"password"})
    row, password = await context(request).writes.register_device(values, body.password)
    return RegisteredDevice(**row, password=password)


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
    changes = body.model_dump(exclude_unset=True, exclude={"password"})
    password = body.password if "password" in body.model_fields_set else None
    return Device(**await context(request).writes.update_device(path.device_id, changes, password))


@endpoints.delete(
    "/devices/{device_id}", summary="Delete a device and end its session", tag=TAG, errors=(404,)
)
async def delete_device(request: web.Request, path: DevicePath) -> Deleted:
    await context(request).writes.delete_device(path.device_id)
    return Deleted()
