"""Desired configuration of devices and groups (``controller.configuration`` does the
work). Writes take ``If-Match: <version>`` to be conditional: a stale version is 412."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from edgefleet.controller.api.context import caller, context, scope
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.errors import bad_request
from edgefleet.controller.api.schemas import (
    DevicePath,
    GroupPath,
    IdOut,
    Instant,
    ParamsModel,
    RequestModel,
)
from edgefleet.controller.configuration import patching, replacing
from edgefleet.controller.store.configs import Change

TAG = "configuration"
IF_MATCH_DOC = "Send `If-Match: <version>` to make the write conditional (412 when stale)."


class ConfigBody(RequestModel):
    config: dict[str, Any] = Field(
        description="PUT: the whole document; PATCH: a JSON merge patch (RFC 7386) of it. "
        "At most 32 KiB as JSON."
    )


class ConfigQuery(ParamsModel):
    effective: bool = Field(
        False,
        description="Show what the device should run: its groups' documents merged in "
        "group name order, its own on top.",
    )


class DeviceConfig(BaseModel):
    device_id: IdOut
    desired: dict[str, Any] = Field(
        description="The device's own document, or with `effective=true` the merged one."
    )
    desired_version: int = Field(
        description="The version of `desired`: the document's own (what `If-Match` compares), "
        "or with `effective=true` the effective version sent to the device."
    )
    effective_version: int = Field(
        description="Goes up with every change of what the device should run."
    )
    groups: list[str] = Field(
        description="The groups whose documents are merged in, in merge order."
    )
    reported: Any = Field(description="What the device last reported it runs, as it sent it.")
    reported_version: int | None
    report_status: Literal["success", "fail"] | None
    report_message: str | None
    in_sync: bool | None = Field(
        description="Whether the device runs its effective configuration; null when the "
        "device cannot be sent one (`reason` says why)."
    )
    reason: str | None = Field(description="Why `in_sync` is not true.")
    updated_at: Instant | None
    reported_at: Instant | None


class GroupConfig(BaseModel):
    group_id: IdOut
    config: dict[str, Any]
    version: int
    updated_at: Instant | None


def _if_match(request: web.Request) -> int | None:
    value = request.headers.get("If-Match")
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 9:
        raise bad_request(f"If-Match: {value!r} is not a version number")
    return int(text)


def _device_answer(row: dict[str, Any], effective: bool) -> DeviceConfig:
    merged = row["effective"]
    return DeviceConfig(
        **{key: value for key, value in row.items() if key != "desired"},
        desired=merged.config if effective else row["desired"],
        desired_version=row["effective_version"] if effective else row["version"],
        groups=list(merged.groups),
    )


@endpoints.get(
    "/devices/{device_id}/config",
    summary="A device's desired and reported configuration, and whether they agree",
    tag=TAG,
    errors=(404,),
    permission="devices:read",
)
async def get_device_config(
    request: web.Request, path: DevicePath, query: ConfigQuery
) -> DeviceConfig:
    service = context(request).configs
    row = await service.device(path.device_id, scope(request))
    return _device_answer(row, query.effective)


async def _set_device(request: web.Request, device_id: int, change: Change) -> DeviceConfig:
    service = context(request).configs
    action = f"{request.method.lower()}_device_config"
    row = await service.set_device(caller(request), device_id, change, _if_match(request), action)
    return _device_answer(row, effective=False)


@endpoints.put(
    "/devices/{device_id}/config",
    summary="Set a device's desired configuration; its version goes up. " + IF_MATCH_DOC,
    tag=TAG,
    errors=(404, 412),
    permission="config:write",
)
async def put_device_config(
    request: web.Request, path: DevicePath, body: ConfigBody
) -> DeviceConfig:
    return await _set_device(request, path.device_id, replacing(body.config))


@endpoints.patch(
    "/devices/{device_id}/config",
    summary="Merge-patch a device's desired configuration. " + IF_MATCH_DOC,
    tag=TAG,
    errors=(404, 412),
    permission="config:write",
)
async def patch_device_config(
    request: web.Request, path: DevicePath, body: ConfigBody
) -> DeviceConfig:
    return await _set_device(request, path.device_id, patching(body.config))


@endpoints.get(
    "/groups/{group_id}/config",
    summary="A group's configuration",
    tag=TAG,
    errors=(404,),
    permission="groups:read",
)
async def get_group_config(request: web.Request, path: GroupPath) -> GroupConfig:
    return GroupConfig(**await context(request).configs.group(path.group_id, scope(request)))


async def _set_group(request: web.Request, group_id: int, change: Change) -> GroupConfig:
    service = context(request).configs
    action = f"{request.method.lower()}_group_config"
    row = await service.set_group(caller(request), group_id, change, _if_match(request), action)
    return GroupConfig(**row)


@endpoints.put(
    "/groups/{group_id}/config",
    summary="Set a group's configuration; every member is sent its new effective "
    "configuration. " + IF_MATCH_DOC,
    tag=TAG,
    errors=(404, 412),
    permission="config:write",
)
async def put_group_config(request: web.Request, path: GroupPath, body: ConfigBody) -> GroupConfig:
    return await _set_group(request, path.group_id, replacing(body.config))


@endpoints.patch(
    "/groups/{group_id}/config",
    summary="Merge-patch a group's configuration. " + IF_MATCH_DOC,
    tag=TAG,
    errors=(404, 412),
    permission="config:write",
)
async def patch_group_config(
    request: web.Request, path: GroupPath, body: ConfigBody
) -> GroupConfig:
    return await _set_group(request, path.group_id, patching(body.config))
