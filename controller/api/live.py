"""Live status and commands: the parts of the API that need a device's session.

Sessions are held by the southbound service, which is not part of this build yet:
no device can be online, so after checking that the device (or group) exists these
endpoints answer what the protocol says for an offline device. The southbound plugs
its command router in here.
"""

from __future__ import annotations

from aiohttp import web

from controller.api.context import context
from controller.api.endpoints import endpoints
from controller.api.errors import ApiError, ErrorType
from controller.api.schemas import (
    CommandRequest,
    CommandResult,
    DevicePath,
    GroupCommandResults,
    GroupPath,
    LiveStatus,
)
from controller.store import DeviceFilter

TAG = "live"
OFFLINE_MESSAGE = "Device is offline!"


def device_offline() -> ApiError:
    return ApiError(409, ErrorType.DEVICE_OFFLINE, OFFLINE_MESSAGE)


@endpoints.get(
    "/devices/{device_id}/status",
    summary="Latest status upload, derived percentages, state and last seen",
    tag=TAG,
    errors=(404, 409),
)
async def device_status(request: web.Request, path: DevicePath) -> LiveStatus:
    await context(request).store.devices.get(path.device_id)
    raise device_offline()


@endpoints.post(
    "/devices/{device_id}/commands",
    summary="Send a command and wait for its result",
    tag=TAG,
    errors=(404, 409, 504),
)
async def send_device_command(
    request: web.Request, path: DevicePath, body: CommandRequest
) -> CommandResult:
    await context(request).store.devices.get(path.device_id)
    raise device_offline()


@endpoints.post(
    "/groups/{group_id}/commands",
    summary="Send a command to every device of a group; one result per device",
    tag=TAG,
    errors=(404,),
)
async def send_group_command(
    request: web.Request, path: GroupPath, body: CommandRequest
) -> GroupCommandResults:
    store = context(request).store
    group = await store.groups.get(path.group_id)
    rows, _ = await store.devices.list(
        DeviceFilter(group_id=path.group_id), page=1, per_page=max(1, group["device_count"])
    )
    return GroupCommandResults(
        results=[
            CommandResult(device_id=row["device_id"], status="fail", message=OFFLINE_MESSAGE)
            for row in rows
        ]
    )
