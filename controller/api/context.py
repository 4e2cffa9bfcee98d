"""What every handler can reach, stored once on the aiohttp application."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from edgefleet.controller.analysis.cache import ClassificationCache
from edgefleet.controller.commands import CommandService
from edgefleet.controller.device_link import DeviceLink
from edgefleet.controller.settings import ApiSettings
from edgefleet.controller.store import Store
from edgefleet.controller.store.blobs import FileStore
from edgefleet.controller.writes import FleetWrites


@dataclass(frozen=True)
class ApiContext:
    store: Store
    """Reads; every write goes through ``writes``."""
    settings: ApiSettings
    token: str
    link: DeviceLink
    """Live status of the device sessions."""
    writes: FleetWrites
    commands: CommandService
    files: FileStore
    """Devices' files, for downloads."""
    classify: ClassificationCache | None
    """None: no classifier is configured, analysis is off."""
    max_file_bytes: int


CONTEXT = web.AppKey("context", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
