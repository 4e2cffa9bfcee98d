"""Device registration, reads, lists, changes and deletion."""

from __future__ import annotations

from aiohttp import web

from edgefleet.controller.api.context import caller, context, scope
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
from edgefleet.controller.store.selectors import parse_selector

TAG = "devices"
# Anything but the bulk routes' own words, so that /devices/import and
# /devices/export are never taken for a device id (nor listed as allowing the
# methods of /devices/{device_id}); other non-ids still reach the 400 that names them.
DEVICE = r"/devices/{device_id:(?!import$|export$)[^/]+}"


@endpoints.post(
    "/devices",
    summary="Register a device; the answer holds its password, once",
    tag=TAG,
    status=201,
    errors=(409,),
    permission="devices:write",
)
async def register_device(request: web.Request, body: DeviceCreate) -> RegisteredDevice:
    values = body.model_dump(exclude={"password"})
    row, password = await context(request).writes.register_device(
        caller(request), values, body.password
    )
    return RegisteredDevice(**row, password=password)


@endpoints.get(
    "/devices", summary="List devices, filtered and paged", tag=TAG, permission="devices:read"
)
async def list_devices(request: web.Request, query: DeviceListQuery) -> Page[Device]:
    where = DeviceFilter(
        state=query.state,
        type=query.type,
        group_id=query.group,
        text=query.q,
        selector=parse_selector(query.selector) if query.selector is not None else None,
        scope=scope(request),
    )
    rows, total = await context(request).store.devices.list(where, query.page, query.per_page)
    return Page[Device].of(rows, total, query)


@endpoints.get(
    DEVICE,
    summary="Get a device",
    tag=TAG,
    errors=(404,),
    permission="devices:read",
)
async def get_device(request: web.Request, path: DevicePath) -> Device:
    return Device(**await context(request).store.devices.get(path.device_id, scope(request)))


@endpoints.patch(
    DEVICE,
    summary="Change a device",
    tag=TAG,
    errors=(404, 409),
    permission="devices:write",
)
async def update_device(request: web.Request, path: DevicePath, body: DeviceUpdate) -> Device:
    changes = body.model_dump(exclude_unset=True, exclude={"password"})
    password = body.password if "password" in body.model_fields_set else None
    writes = context(request).writes
    return Device(**await writes.update_device(caller(request), path.device_id, changes, password))


@endpoints.delete(
    DEVICE,
    summary="Delete a device and end its session",
    tag=TAG,
    errors=(404,),
    permission="devices:write",
)
async def delete_device(request: web.Request, path: DevicePath) -> Deleted:
    await context(request).writes.delete_device(caller(request), path.device_id)
    return Deleted()
