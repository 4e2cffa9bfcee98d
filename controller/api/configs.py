"""Desired configuration of devices and groups (``controller.configuration`` does the
work). Writes take ``If-Match: <version>`` (``Conditional``, so the document lists
it) to be conditional: a stale version is 412."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from edgefleet.controller.api.context import caller, context, scope
from edgefleet.controller.api.endpoints import endpoints
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


class Conditional(ParamsModel):
    """The headers of a write that may be conditional."""

    if_match: int | None = Field(
        None,
        alias="If-Match",
        ge=0,
        le=999_999_999,
        description="The version the write expects (the document's `version`, or "
        "`desired_version` of a device's own document): a stale one is 412 and nothing "
        'is written. Bare (`7`) or as an entity tag (`"7"`, `W/"7"`); left out, the write '
        "is unconditional.",
    )

    @field_validator("if_match", mode="before")
    @classmethod
    def _entity_tag(cls, value: object) -> object:
        """An entity tag is the version in quotes, maybe weak; anything else must be
        a plain version number."""
        if isinstance(value, str):
            text = value.strip().removeprefix("W/").strip('"')
            if not text.isdigit():
                raise ValueError(f"{value!r} is not a version number")
            return int(text)
        return value


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


async def _set_device(
    request: web.Request, device_id: int, change: Change, if_match: int | None
) -> DeviceConfig:
    service = context(request).configs
    action = f"{request.method.lower()}_device_config"
    row = await service.set_device(caller(request), device_id, change, if_match, action)
    return _device_answer(row, effective=False)


@endpoints.put(
    "/devices/{device_id}/config",
    summary="Set a device's desired configuration; its version goes up if it changes. "
    + IF_MATCH_DOC,
    tag=TAG,
    errors=(404, 412),
    permission="config:write",
)
async def put_device_config(
    request: web.Request, path: DevicePath, body: ConfigBody, headers: Conditional
) -> DeviceConfig:
    return await _set_device(request, path.device_id, replacing(body.config), headers.if_match)


@endpoints.patch(
    "/devices/{device_id}/config",
    summary="Merge-patch a device's desired configuration. " + IF_MATCH_DOC,
    tag=TAG,
    errors=(404, 412),
    permission="config:write",
)
async def patch_device_config(
    request: web.Request, path: DevicePath, body: ConfigBody, headers: Conditional
) -> DeviceConfig:
    return await _set_device(request, path.device_id, patching(body.config), headers.if_match)


@endpoints.get(
    "/groups/{group_id}/config",
    summary="A group's configuration",
    tag=TAG,
    errors=(404,),
    permission="groups:read",
)
async def get_group_config(request: web.Request, path: GroupPath) -> GroupConfig:
    return GroupConfig(**await context(request).configs.group(path.group_id, scope(request)))


async def _set_group(
    request: web.Request, group_id: int, change: Change, if_match: int | None
) -> GroupConfig:
    service = context(request).configs
    action = f"{request.method.lower()}_group_config"
    row = await service.set_group(caller(request), group_id, change, if_match, action)
    return GroupConfig(**row)


@endpoints.put(
    "/groups/{group_id}/config",
    summary="Set a group's configuration; every member is sent its new effective "
    "configuration. " + IF_MATCH_DOC,
    tag=TAG,
    errors=(404, 412),
    permission="config:write",
)
async def put_group_config(
    request: web.Request, path: GroupPath, body: ConfigBody, headers: Conditional
) -> GroupConfig:
    return await _set_group(request, path.group_id, replacing(body.config), headers.if_match)


@endpoints.patch(
    "/groups/{group_id}/config",
    summary="Merge-patch a group's configuration. " + IF_MATCH_DOC,
    tag=TAG,
    errors=(404, 412),
    permission="config:write",
)
async def patch_group_config(
    request: web.Request, path: GroupPath, body: ConfigBody, headers: Conditional
) -> GroupConfig:
    return await _set_group(request, path.group_id, patching(body.config), headers.if_match)
