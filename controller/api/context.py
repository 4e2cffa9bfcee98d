"""What every handler can reach, stored once on the aiohttp application, and what
the routing layer put on each request (who calls, where they may act)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from edgefleet.controller.access.accounts import AccountWrites
from edgefleet.controller.access.authenticator import Authenticator
from edgefleet.controller.access.principal import Caller
from edgefleet.controller.access.sign_in import SignIn
from edgefleet.controller.analysis.cache import ClassificationCache
from edgefleet.controller.api.routing import CALLER, SCOPE
from edgefleet.controller.artifacts import ArtifactWrites
from edgefleet.controller.bulk_import import DeviceImport
from edgefleet.controller.commands import CommandService
from edgefleet.controller.configuration import ConfigService
from edgefleet.controller.device_link import DeviceLink
from edgefleet.controller.jobs import JobScheduler, JobService
from edgefleet.controller.settings import ApiSettings
from edgefleet.controller.store import Scope, Store
from edgefleet.controller.store.blobs import FileStore
from edgefleet.controller.stream import EventHub
from edgefleet.controller.writes import FleetWrites


@dataclass(frozen=True)
class ApiContext:
    store: Store
    """Reads; every write goes through ``writes``, ``accounts`` or ``sign_in``."""
    settings: ApiSettings
    link: DeviceLink
    """Live status of the device sessions."""
    writes: FleetWrites
    imports: DeviceImport
    commands: CommandService
    configs: ConfigService
    jobs: JobService
    scheduler: JobScheduler
    """Rolls the jobs out; runs in the background of every controller process."""
    files: FileStore
    """Devices' files, for downloads."""
    artifacts: ArtifactWrites
    """Uploading and deleting software artifacts."""
    classify: ClassificationCache | None
    """None: no classifier is configured, analysis is off."""
    max_file_bytes: int
    authenticator: Authenticator
    sign_in: SignIn
    accounts: AccountWrites
    events: EventHub
    """The live event stream's fan-out."""


CONTEXT = web.AppKey("context", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def caller(request: web.Request) -> Caller:
    """The principal making this request, for the write services and the audit log."""
    return request[CALLER]


def scope(request: web.Request) -> Scope:
    """Where the caller holds the route's permission: hand it to every query."""
    return request[SCOPE]  # type: ignore[return-value]
