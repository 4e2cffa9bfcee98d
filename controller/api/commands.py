"""Commands to devices and groups (``controller.commands`` does the work)."""

from __future__ import annotations

from aiohttp import web

from edgefleet.controller.api.context import caller, context
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.errors import ApiError, ErrorType
from edgefleet.controller.api.schemas import (
    CommandRequest,
    DeviceCommandResult,
    DevicePath,
    GroupCommandResults,
    GroupPath,
)

TAG = "commands"


@endpoints.post(
    "/devices/{device_id}/commands",
    summary="Send a command and wait for its result",
    tag=TAG,
    errors=(404, 409, 504),
    permission="commands:send",
)
async def send_device_command(
    request: web.Request, path: DevicePath, body: CommandRequest
) -> DeviceCommandResult:
    commands = context(request).commands
    result = await commands.send(
        caller(request), path.device_id, body.order, body.params, body.timeout
    )
    if result.status == "timeout":
        seconds = body.timeout or commands.default_timeout
        raise ApiError(
            504, ErrorType.COMMAND_TIMEOUT, f"no result from the device within {seconds:g} s"
        )
    return DeviceCommandResult.of(path.device_id, result)


@endpoints.post(
    "/groups/{group_id}/commands",
    summary="Send a command to every device of a group at once; one result per device",
    tag=TAG,
    errors=(404,),
    permission="commands:send",
)
async def send_group_command(
    request: web.Request, path: GroupPath, body: CommandRequest
) -> GroupCommandResults:
    results = await context(request).commands.send_to_group(
        caller(request), path.group_id, body.order, body.params, body.timeout
    )
    return GroupCommandResults(
        results=[DeviceCommandResult.of(device_id, result) for device_id, result in results]
    )
