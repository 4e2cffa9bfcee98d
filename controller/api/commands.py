"""Commands to devices and groups, queued commands, and the command history
(``controller.commands`` does the work)."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from edgefleet.agent.protocol import CommandResult
from edgefleet.controller.api.context import caller, context, scope
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.errors import ApiError, ErrorType
from edgefleet.controller.api.routing import accept
from edgefleet.controller.api.schemas import (
    CommandRequest,
    DeviceCommandResult,
    DevicePath,
    GroupCommandResults,
    GroupPath,
    IdIn,
    IdOut,
    Instant,
    Page,
    PageQuery,
    ParamsModel,
    RequestModel,
)

TAG = "commands"
MAX_TTL = 30 * 24 * 3600.0


class QueueOptions(RequestModel):
    ttl: float = Field(
        gt=0,
        le=MAX_TTL,
        description="Seconds the command waits for the device before it expires (at most 30 days).",
    )


class DeviceCommandRequest(CommandRequest):
    queue: QueueOptions | None = Field(
        None,
        description="Queue the command instead of failing when the device is offline or "
        "busy: the answer is 202 with its `command_id`, and the device gets it (in order) "
        "when it is next online.",
    )


class CommandPath(ParamsModel):
    command_id: IdIn


class CommandOutcome(BaseModel):
    status: Literal["success", "fail", "timeout"]
    message: str
    data: Any = None


class Command(BaseModel):
    command_id: IdOut
    device_id: IdOut
    order: str
    params: dict[str, Any]
    state: Literal["queued", "sent", "succeeded", "failed", "timed_out", "expired", "canceled"]
    queued: bool = Field(description="Sent with `queue`: it waited for the device.")
    timeout: float
    actor: str = Field(description="Who sent it.")
    created_at: Instant
    expires_at: Instant | None
    sent_at: Instant | None
    finished_at: Instant | None
    result: CommandOutcome | None = Field(description="The device's answer, once there is one.")

    @classmethod
    def of(cls, row: dict[str, Any]) -> Command:
        result = None
        if row["result_status"] is not None:
            result = CommandOutcome(
                status=row["result_status"],
                message=row["result_message"] or "",
                data=row["result_data"],
            )
        return cls(**row, result=result)


@endpoints.post(
    "/devices/{device_id}/commands",
    summary="Send a command and wait for its result, or queue it for when the device is online",
    tag=TAG,
    errors=(404, 409, 504),
    permission="commands:send",
    accepted="queued (`queue` given): `command_id` names it in the history",
)
async def send_device_command(
    request: web.Request, path: DevicePath, body: DeviceCommandRequest
) -> DeviceCommandResult:
    commands = context(request).commands
    if body.queue is not None:
        row = await commands.queue(
            caller(request), path.device_id, body.order, body.params, body.timeout, body.queue.ttl
        )
        accept(request)
        message = f"queued for {body.queue.ttl:g} s"
        queued = CommandResult("queued", message)
        return DeviceCommandResult.of(path.device_id, row["command_id"], queued)
    command_id, result = await commands.send(
        caller(request), path.device_id, body.order, body.params, body.timeout
    )
    if result.status == "timeout":
        seconds = body.timeout or commands.default_timeout
        raise ApiError(
            504, ErrorType.COMMAND_TIMEOUT, f"no result from the device within {seconds:g} s"
        )
    return DeviceCommandResult.of(path.device_id, command_id, result)


class GroupCommandRequest(CommandRequest):
    queue: QueueOptions | None = Field(
        None,
        description="Queue the command for every member instead of sending it now: the "
        "answer is 202 with one queued command (`command_id`) per member, and each "
        "member gets its own (in order) when it is next online.",
    )


@endpoints.post(
    "/groups/{group_id}/commands",
    summary="Send a command to every device of a group at once, or queue it for each; "
    "one result per device",
    tag=TAG,
    errors=(404,),
    permission="commands:send",
    accepted="queued (`queue` given): one `command_id` per member, each in that device's "
    "history, and `status` `queued` (`fail` for a member an update's artifact is not for)",
)
async def send_group_command(
    request: web.Request, path: GroupPath, body: GroupCommandRequest
) -> GroupCommandResults:
    commands = context(request).commands
    if body.queue is not None:
        results = await commands.queue_to_group(
            caller(request), path.group_id, body.order, body.params, body.timeout, body.queue.ttl
        )
        accept(request)
    else:
        results = await commands.send_to_group(
            caller(request), path.group_id, body.order, body.params, body.timeout
        )
    return GroupCommandResults(results=[DeviceCommandResult.of(*result) for result in results])


@endpoints.get(
    "/commands/{command_id}",
    summary="A command: its state (queued, sent, succeeded, failed, timed_out, expired, "
    "canceled) and result",
    tag=TAG,
    errors=(404,),
    permission="devices:read",
)
async def get_command(request: web.Request, path: CommandPath) -> Command:
    ctx = context(request)
    await ctx.commands.settled(path.command_id)
    return Command.of(await ctx.store.commands.get(path.command_id, scope(request)))


@endpoints.delete(
    "/commands/{command_id}",
    summary="Cancel a queued command (409 once it was sent)",
    tag=TAG,
    errors=(404, 409),
    permission="commands:send",
)
async def cancel_command(request: web.Request, path: CommandPath) -> Command:
    return Command.of(await context(request).commands.cancel(caller(request), path.command_id))


@endpoints.get(
    "/devices/{device_id}/commands",
    summary="A device's command history, newest first: every command, queued or not",
    tag=TAG,
    errors=(404,),
    permission="devices:read",
)
async def list_device_commands(
    request: web.Request, path: DevicePath, query: PageQuery
) -> Page[Command]:
    store = context(request).store
    await store.devices.get(path.device_id, scope(request))
    await context(request).commands.settled()
    rows, total = await store.commands.of_device(path.device_id, query.page, query.per_page)
    return Page[Command].of([Command.of(row) for row in rows], total, query)
