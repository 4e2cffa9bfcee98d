"""The northbound aiohttp application: middlewares, routes, metrics (docs: ``docs.py``).

Middlewares, outermost first:
1. ``observe`` gives each request an id, times it, logs it and counts it;
2. ``envelope`` turns every exception into the failure envelope (and logs the
   unexpected ones with their trace and the request id, which the answer carries
   instead of the trace);
3. ``authenticate`` resolves the bearer (an access token, an API key or the
   bootstrap token) to the request's principal on everything but the public
   routes; each route's permission is then checked where the route is declared
   (``routing.py``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

# Importing the handler modules fills the endpoint table.
from edgefleet.controller.access.accounts import AccountWrites
from edgefleet.controller.access.authenticator import Authenticator
from edgefleet.controller.access.sign_in import SignIn
from edgefleet.controller.access.tokens import JwtKeys
from edgefleet.controller.analysis.cache import ClassificationCache
from edgefleet.controller.api import (  # noqa: F401
    api_keys,
    artifacts,
    audit,
    auth,
    bulk,
    classify,
    commands,
    configs,
    devices,
    events,
    files,
    groups,
    jobs,
    live,
    memberships,
    records,
    roles,
    stats,
    stream,
    users,
)
from edgefleet.controller.api.console import add_console, is_console_path
from edgefleet.controller.api.context import CONTEXT, ApiContext, context
from edgefleet.controller.api.docs import add_docs, is_docs_path
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.errors import (
    KNOWN,
    ApiError,
    ErrorType,
    as_api_error,
    describe_failure,
)
from edgefleet.controller.api.metrics import METRICS, ApiMetrics
from edgefleet.controller.api.openapi import build_document
from edgefleet.controller.api.routing import AUDITOR, PRINCIPAL, REQUEST_ID, SOURCE
from edgefleet.controller.api.schemas import Health
from edgefleet.controller.artifacts import ArtifactWrites
from edgefleet.controller.bulk_import import DeviceImport
from edgefleet.controller.commands import CommandService
from edgefleet.controller.configuration import ConfigChanges, ConfigService
from edgefleet.controller.device_link import DeviceLink, NoDeviceLink
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.jobs import JobScheduler, JobService
from edgefleet.controller.membership_changes import MembershipChanges
from edgefleet.controller.mirror import NoMirror, ResourceMirror
from edgefleet.controller.settings import (
    ApiSettings,
    AuthSettings,
    DataSettings,
    JobSettings,
    SouthboundSettings,
    StreamSettings,
)
from edgefleet.controller.status_watch import StatusWatch
from edgefleet.controller.store import Store
from edgefleet.controller.store.blobs import FileStore, LocalFileStore
from edgefleet.controller.stream import EventHub
from edgefleet.controller.writes import Auditor, FleetWrites

log = logging.getLogger("edgefleet.api")

MAX_BODY = 1024 * 1024
REQUEST_ID_FORMAT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
PUBLIC_PATHS = {"/metrics"}
HTTP_ERROR_TYPES = {401: ErrorType.AUTH_ERROR, 403: ErrorType.AUTH_ERROR}
PUBLIC = web.AppKey("public_paths", frozenset)
TRUST_FORWARDED = web.AppKey("trust_forwarded_for", bool)
BACKGROUND = web.AppKey("background_tasks", list)
STOP_WAIT = 5.0


@endpoints.get("/health", summary="The process is up", tag="operations", public=True)
async def health(_request: web.Request) -> Health:
    return Health()


@endpoints.get(
    "/ready",
    summary="The process can serve: the database answers",
    tag="operations",
    public=True,
    errors=(503,),
)
async def ready(request: web.Request) -> Health:
    await context(request).store.db.ping()
    return Health()


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if REQUEST_ID_FORMAT.match(incoming) else uuid.uuid4().hex[:16]
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    response = await handler(request)
    elapsed = time.perf_counter() - started
    response.headers["X-Request-ID"] = request_id
    resource = request.match_info.route.resource
    route = resource.canonical if resource else "unmatched"
    request.app[METRICS].observe(route, request.method, response.status, elapsed)
    log.info(
        "request",
        extra={
            "request_id": request_id,
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "ms": round(elapsed * 1000, 2),
        },
    )
    return response


@web.middleware
async def envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        if isinstance(exc, web.HTTPException) and exc.status < 400:
            raise
        if request.writer.output_size > 0:
            # A streamed answer (an export) had begun: a second answer written now
            # would land inside the first one's body. Raised on, it makes aiohttp
            # end the connection without the final chunk, which is how the client
            # learns that the stream broke off.
            log.warning("streamed answer broken off", extra={
                "request_id": request[REQUEST_ID], "error": type(exc).__name__})  # fmt: skip
            raise
        return _error_answer(request, exc)


def _error_answer(request: web.Request, exc: Exception) -> web.Response:
    if isinstance(exc, KNOWN):
        error = as_api_error(exc)
        if error.status == 503:
            log.warning(
                "database unavailable",
                extra={"request_id": request[REQUEST_ID], "error": str(exc)},
            )
    elif isinstance(exc, web.HTTPException):
        error_type = HTTP_ERROR_TYPES.get(exc.status, ErrorType.GENERAL_ERROR)
        error = ApiError(exc.status, error_type, exc.reason)
        if "Allow" in exc.headers:
            return web.json_response(
                error.body(), status=error.status, headers={"Allow": exc.headers["Allow"]}
            )
    else:
        log.error("unhandled error", exc_info=exc, extra={"request_id": request[REQUEST_ID]})
        error = ApiError(
            500,
            ErrorType.INNER_ERROR,
            f"internal error; quote request id {request[REQUEST_ID]} when reporting it",
        )
    return web.json_response(error.body(), status=error.status, headers=error.headers)


def _is_public(path: str, public_paths: frozenset[str]) -> bool:
    return path in public_paths or is_docs_path(path) or is_console_path(path)


def _source(request: web.Request) -> str:
    """The client's address: the peer's, or behind a trusted proxy the address the
    proxy next to us saw (the last X-Forwarded-For entry; earlier ones are the
    client's own claims)."""
    if request.app[TRUST_FORWARDED]:
        forwarded = request.headers.get("X-Forwarded-For", "").rsplit(",", 1)[-1].strip()
        if forwarded:
            return forwarded[:64]
    return request.remote or "-"


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[SOURCE] = _source(request)
    if not _is_public(request.path, request.app[PUBLIC]):
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, ErrorType.AUTH_ERROR, "missing or wrong bearer token")
        request[PRINCIPAL] = await context(request).authenticator.principal(given.strip())
    return await handler(request)


def create_app(
    store: Store,
    settings: ApiSettings,
    token: str,
    link: DeviceLink | None = None,
    command_timeout: float = SouthboundSettings.command_timeout,
    mirror: ResourceMirror | None = None,
    ids: SnowflakeGenerator | None = None,
    metrics: ApiMetrics | None = None,
    *,
    file_store: FileStore | None = None,
    classifications: ClassificationCache | None = None,
    max_file_bytes: int = DataSettings.max_file_bytes,
    max_artifact_bytes: int = DataSettings.max_artifact_bytes,
    auth_settings: AuthSettings | None = None,
    stream_settings: StreamSettings | None = None,
    job_settings: JobSettings | None = None,
) -> web.Application:
    """The API; ``link`` reaches the device sessions (none: every device is offline);
    ``mirror`` takes every write first in Kubernetes mode (none: standalone);
    ``token`` is the bootstrap token, which acts as an administrator;
    ``file_store`` holds devices' files (default ``./edgefleet-files``);
    ``classifications`` is the classifier behind its cache (none: analysis is off)."""
    auth_settings = auth_settings or AuthSettings()
    app = web.Application(middlewares=[observe, envelope, authenticate], client_max_size=MAX_BODY)
    link = link or NoDeviceLink()
    ids = ids or SnowflakeGenerator(settings.worker_id)
    auditor = Auditor(store, describe_failure)
    authenticator = Authenticator(
        store,
        JwtKeys.from_settings(auth_settings.jwt_key, auth_settings.jwt_previous_keys),
        token,
        auth_settings.principal_cache_ttl,
    )
    rounds = settings.bcrypt_rounds
    mirror = mirror or NoMirror()
    regrouping = MembershipChanges(store, ConfigChanges(store, link), mirror.memberships_changed)
    file_store = file_store or LocalFileStore(DataSettings.files_dir)
    command_service = CommandService(store, link, command_timeout, auditor, ids)
    config_service = ConfigService(store, link, auditor, mirror)
    metrics = metrics or ApiMetrics(store.stats.by_state)
    app[CONTEXT] = ApiContext(
        store=store,
        settings=settings,
        link=link,
        writes=FleetWrites(store, mirror, link, ids, rounds, auditor, regrouping),
        imports=DeviceImport(store, mirror, ids, rounds, auditor, regrouping),
        commands=command_service,
        configs=config_service,
        jobs=JobService(store, command_service, auditor, ids),
        scheduler=JobScheduler(
            store, link, ids, job_settings or JobSettings(), config_service, metrics
        ),
        files=file_store,
        artifacts=ArtifactWrites(store, file_store, ids, auditor, max_artifact_bytes),
        classify=classifications,
        max_file_bytes=max_file_bytes,
        authenticator=authenticator,
        sign_in=SignIn(store, authenticator, auditor, ids, auth_settings, rounds),
        accounts=AccountWrites(store, authenticator, auditor, ids, rounds),
        events=EventHub(store, stream_settings or StreamSettings()),
    )
    app[METRICS] = metrics
    app[PUBLIC] = frozenset(PUBLIC_PATHS | {e.path for e in endpoints.table if e.public})
    app[TRUST_FORWARDED] = auth_settings.trust_forwarded_for
    app[AUDITOR] = auditor
    app[BACKGROUND] = []
    endpoints.add_to(app)
    add_docs(app, openapi_document())
    add_console(app)
    app.router.add_get("/metrics", app[METRICS].handle_scrape)
    app.on_startup.append(_start_background(auth_settings))
    app.on_shutdown.append(_end_streams)
    app.on_cleanup.append(_stop_background)
    app.on_cleanup.append(_write_command_results)
    return app


def _start_background(settings: AuthSettings) -> Callable[[web.Application], Awaitable[None]]:
    """Built-in roles and the first admin (retried while the database is away),
    the event stream's poller and the job scheduler."""

    async def start(app: web.Application) -> None:
        ctx = app[CONTEXT]
        tasks = app[BACKGROUND]
        username, password = settings.admin_username, settings.admin_password
        if not await ctx.accounts.prepare(username, password):
            # The database is away: keep trying in the background; the bootstrap
            # token works meanwhile.
            tasks.append(
                asyncio.create_task(
                    ctx.accounts.prepare_when_possible(username, password), name="access-setup"
                )
            )
        tasks.append(asyncio.create_task(ctx.events.run(), name="event-stream"))
        watch = StatusWatch(ctx.events, ctx.link)
        tasks.append(asyncio.create_task(watch.run(), name="event-stream-status"))
        tasks.append(asyncio.create_task(ctx.scheduler.run(), name="job-scheduler"))

    return start


async def _end_streams(app: web.Application) -> None:
    app[CONTEXT].events.close_all()


async def _stop_background(app: web.Application) -> None:
    """Cancel the background tasks and wait a bounded while for them: a task
    cancelled in the middle of a database round trip may take its connection's
    clean-up long to finish, and shutting down must not wait for it."""
    tasks = app[BACKGROUND]
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=STOP_WAIT)
    if pending:
        log.warning(
            "background tasks still stopping", extra={"tasks": [t.get_name() for t in pending]}
        )


async def _write_command_results(app: web.Application) -> None:
    """Commands already answered get their results into the history before the
    database is closed."""
    await app[CONTEXT].commands.close()


def openapi_document() -> dict[str, Any]:
    return build_document(endpoints.table, "edgefleet northbound API", version("edgefleet"))
