"""Declaring an endpoint once: its route, its models, its documented answers.

A handler is a coroutine whose parameters say what it takes::

    @endpoints.get("/devices/{device_id}", summary="Get a device", errors=(404,),
                   permission="devices:read")
    async def get_device(request: web.Request, path: DevicePath) -> Device: ...

The decorator reads the type hints: ``path``, ``query``, ``headers`` and ``body``
name the models that validate the URL parameters, the request headers the handler
reads (each field aliased to its header's name, e.g. ``If-Match``) and the JSON
body; the return type names the response model. The same ``Endpoint`` record then
feeds the aiohttp router and the OpenAPI document, so the two cannot drift apart.

A handler that answers by itself — a file download, the event stream — returns a
``web.StreamResponse`` and names its media types (``media="application/octet-stream"``,
``media="text/event-stream"``, or several: ``media=("text/csv", "application/x-ndjson")``);
one that reads a raw body itself (an uploaded image) names the media types it
takes (``body_media=("image/*", "multipart/form-data")``), or maps each to the
schema of its text (``body_media={"text/csv": {...}}``). Both are documented as such.

Authorisation happens here, once for every route: each declares the permission it
needs (or ``public=True``, or ``permission=AUTHENTICATED``). Before the handler
runs, the caller's principal (resolved by the auth middleware) must hold it
somewhere, else 403; where it holds it — everywhere or some groups — is the
request's ``SCOPE``, which the handler hands to the store's queries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from aiohttp import web
from pydantic import BaseModel, ValidationError

from edgefleet.controller.access.permissions import AUTHENTICATED, PERMISSIONS
from edgefleet.controller.access.principal import ANONYMOUS, AccessDenied, Caller, Principal
from edgefleet.controller.api.errors import bad_request
from edgefleet.controller.store import Scope
from edgefleet.controller.writes import Auditor

Handler = Callable[..., Awaitable[BaseModel | web.StreamResponse]]
EVENT_STREAM = "text/event-stream"
ResponseHook = Callable[[web.StreamResponse], None]

PRINCIPAL = web.RequestKey("principal", Principal)
"""Set by the auth middleware on every request that is not public."""
SCOPE = web.RequestKey("scope", object)
"""Where the principal holds the route's permission (a ``Scope``)."""
CALLER = web.RequestKey("caller", Caller)
RESPONSE_HOOKS = web.RequestKey("response_hooks", list)
"""Callables that adjust the answer before it is sent (e.g. set a cookie)."""
SOURCE = web.RequestKey("source", str)
"""The client's address (the auth middleware decides whether to trust proxies)."""
REQUEST_ID = web.RequestKey("request_id", str)
AUDITOR = web.AppKey("auditor", Auditor)
"""Writes the entry of a change refused here, before any write service saw it."""
TARGETS = {"device_id": "device", "group_id": "group", "user_id": "user", "role_id": "role",
           "key_id": "api_key", "artifact_id": "artifact"}  # fmt: skip


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    status: int
    errors: tuple[int, ...]
    public: bool
    permission: str | None
    """What the caller must hold: a permission, ``AUTHENTICATED``, or None (public)."""
    path_model: type[BaseModel] | None
    query_model: type[BaseModel] | None
    header_model: type[BaseModel] | None
    """Request headers the handler reads, by their names (the fields' aliases)."""
    body_model: type[BaseModel] | None
    response_model: type[BaseModel] | None
    """None: the handler answers itself, with ``media``."""
    media: tuple[str, ...] = ("application/json",)
    """Media types of the answer (a handler answering itself may offer several)."""
    body_media: tuple[str, ...] = ()
    """Media types of a raw request body the handler reads itself."""
    body_schemas: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    """The documented schema of such a body, by media type (default: any bytes)."""
    accepted: str | None = None
    """The handler may also answer 202 with the same model (``accept(request)``):
    what that means, for the document."""
    file_field: str = "image"
    """The multipart field that carries the file, when ``body_media`` takes multipart."""

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def documented_path(self) -> str:
        """The path without the routing-only patterns of its parameters
        (``{user_id:\\d+}`` is ``{user_id}``)."""
        return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", self.path)

    @property
    def streams(self) -> bool:
        """An event stream (Server-Sent Events), not one answer."""
        return EVENT_STREAM in self.media


class Endpoints:
    """The table of endpoints of one API, filled by decorators at import time."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.table: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        status: int = 200,
        errors: tuple[int, ...] = (),
        public: bool = False,
        permission: str | None = None,
        media: str | tuple[str, ...] = "application/json",
        body_media: tuple[str, ...] | Mapping[str, dict[str, Any]] = (),
        accepted: str | None = None,
        file_field: str = "image",
    ) -> Callable[[Handler], Handler]:
        if public == (permission is not None):
            raise TypeError(f"{method} {path}: declare public=True or a permission, not both")
        if permission is not None and permission not in {*PERMISSIONS, AUTHENTICATED}:
            raise TypeError(f"{method} {path}: unknown permission {permission!r}")

        def register(handler: Handler) -> Handler:
            hints = get_type_hints(handler)
            body = hints.get("body")
            takes_input = body or body_media or {"path", "query", "headers"} & hints.keys()
            standard = (400, 401, 503) if takes_input else (401, 503)
            returns = hints["return"]
            raw = isinstance(returns, type) and issubclass(returns, web.StreamResponse)
            if permission not in (None, AUTHENTICATED):
                standard = (*standard, 403)
            self.table.append(
                Endpoint(
                    method=method,
                    path=self.prefix + path,
                    handler=handler,
                    summary=summary,
                    tag=tag,
                    status=status,
                    errors=tuple(sorted(set(errors) | set(() if public else standard))),
                    public=public,
                    permission=permission,
                    path_model=hints.get("path"),
                    query_model=hints.get("query"),
                    header_model=hints.get("headers"),
                    body_model=body,
                    response_model=None if raw else returns,
                    media=(media,) if isinstance(media, str) else media,
                    body_media=tuple(body_media),
                    body_schemas=dict(body_media) if isinstance(body_media, Mapping) else {},
                    accepted=accepted,
                    file_field=file_field,
                )
            )
            return handler

        return register

    def get(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kwargs)

    def add_to(self, app: web.Application) -> None:
        for endpoint in self.table:
            app.router.add_route(endpoint.method, endpoint.path, _adapter(endpoint))


def accept(request: web.Request) -> None:
    """Answer 202 instead of the route's status: taken, to be done later."""
    request[RESPONSE_HOOKS].append(lambda response: response.set_status(202))


def strict_json(value: Any) -> str:
    """JSON that every parser takes: a NaN or an infinity is a bug to raise (500),
    never a token like ``NaN`` in an answer that strict clients cannot read."""
    return json.dumps(value, allow_nan=False)


COMPRESS_FROM = 1024
"""Answers this long or longer go compressed to a client that takes it (gzip or
deflate): a page of 50 devices is 27 KB of JSON, 1 to 3 KB on the wire, for well
under a millisecond."""


def success(data: Any, status: int = 200) -> web.Response:
    response = web.json_response(
        {"status": "success", "data": data}, status=status, dumps=strict_json
    )
    if len(response.body) >= COMPRESS_FROM:  # type: ignore[arg-type]
        response.enable_compression()
    return response


async def _authorise(request: web.Request, endpoint: Endpoint) -> None:
    """The route's permission, held somewhere, or 403; its scope for the queries.
    A public route's caller is anonymous (a sign-in says who it is itself). A change
    refused here is audited like one refused by a write service."""
    principal = ANONYMOUS if endpoint.permission is None else request[PRINCIPAL]
    caller = Caller(principal, request[SOURCE], request[REQUEST_ID], endpoint.status)
    request[CALLER] = caller
    scope: Scope = None
    if endpoint.permission not in (None, AUTHENTICATED):
        try:
            scope = principal.scope(endpoint.permission)
        except AccessDenied as denied:
            if endpoint.method != "GET":
                await _audit_refusal(request, endpoint, caller, denied)
            raise
    request[SCOPE] = scope


async def _audit_refusal(
    request: web.Request, endpoint: Endpoint, caller: Caller, denied: AccessDenied
) -> None:
    names = [name for name in TARGETS if name in request.match_info]
    target = names[-1] if names else None
    entry = caller.entry(
        endpoint.operation_id,
        TARGETS[target] if target else endpoint.tag,
        request.match_info[target] if target else None,
    )
    auditor = request.app[AUDITOR]
    await auditor.append(entry.failed(*auditor.describe(denied)))


def _adapter(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        await _authorise(request, endpoint)
        request[RESPONSE_HOOKS] = []
        kwargs: dict[str, BaseModel] = {}
        if endpoint.path_model:
            kwargs["path"] = _validate(endpoint.path_model, dict(request.match_info), "path")
        if endpoint.query_model:
            kwargs["query"] = _validate(endpoint.query_model, dict(request.query), "query")
        if endpoint.header_model:
            kwargs["headers"] = _validate(
                endpoint.header_model, _headers(endpoint.header_model, request), "header"
            )
        if endpoint.body_model:
            kwargs["body"] = await _read_body(request, endpoint.body_model)
        result = await endpoint.handler(request, **kwargs)
        if isinstance(result, web.StreamResponse):
            return result
        response = success(result.model_dump(mode="json"), endpoint.status)
        for hook in request[RESPONSE_HOOKS]:
            hook(response)
        return response

    handle.__name__ = endpoint.operation_id
    return handle


def _headers(model: type[BaseModel], request: web.Request) -> dict[str, str]:
    """The model's headers that the request carries, under the names the model
    spells (header names are case-insensitive; the model's aliases are not)."""
    names = [field.alias or name for name, field in model.model_fields.items()]
    return {name: request.headers[name] for name in names if name in request.headers}


def _validate(model: type[BaseModel], values: dict[str, str], where: str) -> BaseModel:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise bad_request(describe_validation_error(exc, where)) from exc


async def _read_body(request: web.Request, model: type[BaseModel]) -> BaseModel:
    if request.content_type != "application/json":
        raise bad_request(
            f"body: Content-Type must be application/json, not {request.content_type!r}"
        )
    raw = await request.read()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise bad_request(describe_validation_error(exc, "body")) from exc


def describe_validation_error(exc: ValidationError, where: str) -> str:
    """One line naming the offending field, e.g. ``body field 'eth_mac': String should …``."""
    error = exc.errors(include_url=False)[0]
    location = ".".join(str(part) for part in error["loc"])
    if error["type"] == "json_invalid":
        return f"{where}: invalid JSON: {error['ctx'].get('error', error['msg'])}"
    if error["type"] == "extra_forbidden":
        return f"{where} field '{location}': unknown field"
    if not location:
        return f"{where}: {error['msg']}"
    message = error["msg"]
    if error["type"] == "value_error":
        message = message.removeprefix("Value error, ")
    return f"{where} field '{location}': {message}"
