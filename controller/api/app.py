"""The northbound aiohttp application: middlewares, routes, metrics (docs: ``docs.py``).

Middlewares, outermost first:
1. ``observe`` gives each request an id, times it, logs it and counts it;
2. ``envelope`` turns every exception into the failure envelope (and logs the
   unexpected ones with their trace and the request id, which the answer carries
   instead of the trace);
3. ``authenticate`` checks the bearer token on everything but the public routes.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from importlib.metadata import version
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from edgefleet.agent.protocol import CommandRefused
from edgefleet.controller.analysis.cache import ClassificationCache

# Importing the handler modules fills the endpoint table.
from edgefleet.controller.api import (  # noqa: F401
    classify,
    commands,
    devices,
    events,
    files,
    groups,
    live,
    memberships,
    records,
    stats,
)
from edgefleet.controller.api.context import CONTEXT, ApiContext, context
from edgefleet.controller.api.docs import add_docs, is_docs_path
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.errors import ApiError, ErrorType, from_refusal, from_store_error
from edgefleet.controller.api.metrics import METRICS, ApiMetrics
from edgefleet.controller.api.openapi import build_document
from edgefleet.controller.api.schemas import Health
from edgefleet.controller.commands import CommandService
from edgefleet.controller.device_link import DeviceLink, NoDeviceLink
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.mirror import NoMirror, ResourceMirror
from edgefleet.controller.settings import ApiSettings, DataSettings, SouthboundSettings
from edgefleet.controller.store import Store, StoreError
from edgefleet.controller.store.blobs import FileStore, LocalFileStore
from edgefleet.controller.writes import FleetWrites

log = logging.getLogger("edgefleet.api")

MAX_BODY = 1024 * 1024
REQUEST_ID_FORMAT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
PUBLIC_PATHS = {"/metrics"}
HTTP_ERROR_TYPES = {401: ErrorType.AUTH_ERROR, 403: ErrorType.AUTH_ERROR}
PUBLIC = web.AppKey("public_paths", frozenset)
REQUEST_ID = web.RequestKey("request_id", str)


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
    except ApiError as exc:
        error = exc
    except CommandRefused as exc:
        error = from_refusal(exc)
    except StoreError as exc:
        error = from_store_error(exc)
        if error.status == 503:
            log.warning(
                "database unavailable",
                extra={"request_id": request[REQUEST_ID], "error": str(exc)},
            )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error_type = HTTP_ERROR_TYPES.get(exc.status, ErrorType.GENERAL_ERROR)
        error = ApiError(exc.status, error_type, exc.reason)
        if "Allow" in exc.headers:
            return web.json_response(
                error.body(), status=error.status, headers={"Allow": exc.headers["Allow"]}
            )
    except Exception:
        log.exception("unhandled error", extra={"request_id": request[REQUEST_ID]})
        error = ApiError(
            500,
            ErrorType.INNER_ERROR,
            f"internal error; quote request id {request[REQUEST_ID]} when reporting it",
        )
    return web.json_response(error.body(), status=error.status)


def _is_public(path: str, public_paths: frozenset[str]) -> bool:
    return path in public_paths or is_docs_path(path)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_public(request.path, request.app[PUBLIC]):
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        expected = context(request).token
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), expected.encode()
        ):
            raise ApiError(401, ErrorType.AUTH_ERROR, "missing or wrong bearer token")
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
    file_store: FileStore | None = None,
    classifications: ClassificationCache | None = None,
    max_file_bytes: int = DataSettings.max_file_bytes,
) -> web.Application:
    """The API; ``link`` reaches the device sessions (none: every device is offline);
    ``mirror`` takes every write first in Kubernetes mode (none: standalone);
    ``file_store`` holds devices' files (default ``./edgefleet-files``);
    ``classifications`` is the classifier behind its cache (none: analysis is off)."""
    app = web.Application(middlewares=[observe, envelope, authenticate], client_max_size=MAX_BODY)
    link = link or NoDeviceLink()
    ids = ids or SnowflakeGenerator(settings.worker_id)
    writes = FleetWrites(store, mirror or NoMirror(), link, ids, settings.bcrypt_rounds)
    app[CONTEXT] = ApiContext(
        store=store,
        settings=settings,
        token=token,
        link=link,
        writes=writes,
        commands=CommandService(store, link, command_timeout),
        files=file_store or LocalFileStore(DataSettings.files_dir),
        classify=classifications,
        max_file_bytes=max_file_bytes,
    )
    app[METRICS] = metrics or ApiMetrics(store.stats.by_state)
    app[PUBLIC] = frozenset(PUBLIC_PATHS | {e.path for e in endpoints.table if e.public})
    endpoints.add_to(app)
    add_docs(app, openapi_document())
    app.router.add_get("/metrics", app[METRICS].handle_scrape)
    return app


def openapi_document() -> dict[str, Any]:
    return build_document(endpoints.table, "edgefleet northbound API", version("edgefleet"))
