"""Live status and commands: the parts of the API that need a device's session.

The sessions are held by the southbound; ``ApiContext.link`` reaches it (in one
process under ``edgefleet serve``). Without a southbound every device is offline.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiohttp import web

from edgefleet.controller.api.context import ApiContext, context
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.errors import ApiError, ErrorType
from edgefleet.controller.api.schemas import (
    CommandRequest,
    CommandResult,
    DevicePath,
    GroupCommandResults,
    GroupPath,
    LiveStatus,
)
from edgefleet.controller.device_link import DeviceUnavailable
from edgefleet.controller.store import DeviceFilter

TAG = "live"
UNAVAILABLE_TYPES = {"busy": ErrorType.DEVICE_BUSY}


def unavailable(exc: DeviceUnavailable) -> ApiError:
    return ApiError(409, UNAVAILABLE_TYPES.get(exc.kind, ErrorType.DEVICE_OFFLINE), str(exc))


@endpoints.get(
    "/devices/{device_id}/status",
    summary="Latest status upload, derived percentages, state and last seen",
    tag=TAG,
    errors=(404, 409),
)
async def device_status(request: web.Request, path: DevicePath) -> LiveStatus:
    ctx = context(request)
    await ctx.store.devices.get(path.device_id)
    try:
        view = await ctx.link.status(path.device_id)
    except DeviceUnavailable as exc:
        raise unavailable(exc) from exc
    return LiveStatus(
        device_id=view.device_id,
        state=view.state,
        last_seen=datetime.fromtimestamp(view.last_seen, UTC).replace(tzinfo=None),
        cpu_percent=view.cpu_percent,
        memory_used_percent=view.memory_used_percent,
        disk_used_percent=view.disk_used_percent,
        latest=view.latest,
    )


def _timeout(ctx: ApiContext, body: CommandRequest) -> float:
    return body.timeout or ctx.command_timeout


async def _run_command(ctx: ApiContext, device_id: int, body: CommandRequest) -> CommandResult:
    """The device's result (or timeout); raises ``DeviceUnavailable``."""
    outcome = await ctx.link.command(device_id, body.order, body.params, _timeout(ctx, body))
    return CommandResult(
        device_id=device_id, status=outcome.status, message=outcome.message, data=outcome.data
    )


async def _group_member_result(
    ctx: ApiContext, device_id: int, body: CommandRequest
) -> CommandResult:
    """In a group, a device that cannot take the command is one more result."""
    try:
        return await _run_command(ctx, device_id, body)
    except DeviceUnavailable as exc:
        return CommandResult(device_id=device_id, status="fail", message=str(exc))


@endpoints.post(
    "/devices/{device_id}/commands",
    summary="Send a command and wait for its result",
    tag=TAG,
    errors=(404, 409, 504),
)
async def send_device_command(
    request: web.Request, path: DevicePath, body: CommandRequest
) -> CommandResult:
    ctx = context(request)
    await ctx.store.devices.get(path.device_id)
    try:
        result = await _run_command(ctx, path.device_id, body)
    except DeviceUnavailable as exc:
        raise unavailable(exc) from exc
    if result.status == "timeout":
        raise ApiError(
            504,
            ErrorType.COMMAND_TIMEOUT,
            f"no result from the device within {_timeout(ctx, body):g} s",
        )
    return result


@endpoints.post(
    "/groups/{group_id}/commands",
    summary="Send a command to every device of a group at once; one result per device",
    tag=TAG,
    errors=(404,),
)
async def send_group_command(
    request: web.Request, path: GroupPath, body: CommandRequest
) -> GroupCommandResults:
    ctx = context(request)
    group = await ctx.store.groups.get(path.group_id)
    rows, _ = await ctx.store.devices.list(
        DeviceFilter(group_id=path.group_id), page=1, per_page=max(1, group["device_count"])
    )
    results = await asyncio.gather(
        *(_group_member_result(ctx, row["device_id"], body) for row in rows)
    )
    return GroupCommandResults(results=list(results))
