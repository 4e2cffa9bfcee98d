"""What every handler can reach, stored once on the aiohttp application."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from edgefleet.controller.device_link import DeviceLink
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.mirror import ResourceMirror
from edgefleet.controller.settings import ApiSettings
from edgefleet.controller.store import Store


@dataclass(frozen=True)
class ApiContext:
    store: Store
    ids: SnowflakeGenerator
    settings: ApiSettings
    token: str
    link: DeviceLink
    command_timeout: float
    mirror: ResourceMirror


CONTEXT = web.AppKey("context", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
