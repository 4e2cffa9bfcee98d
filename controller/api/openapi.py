"""The OpenAPI 3.1 document, built from the endpoint table and its pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from edgefleet.controller.access.permissions import AUTHENTICATED, PERMISSIONS
from edgefleet.controller.api.errors import ErrorType
from edgefleet.controller.api.routing import Endpoint

REF = "#/components/schemas/{model}"

FAILURE = {
    "type": "object",
    "required": ["status", "type", "message"],
    "properties": {
        "status": {"const": "fail"},
        "type": {"enum": [t.value for t in ErrorType]},
        "message": {"type": "string"},
    },
}

ERROR_DESCRIPTIONS = {
    400: "GENERAL_ERROR: bad JSON, wrong Content-Type, or a missing or mistyped field "
    "(the message names it)",
    401: "AUTH_ERROR: missing, wrong, expired or revoked token or key",
    403: "AUTH_ERROR: the caller lacks the permission (the message names it)",
    404: "not found, or outside the caller's groups (DEVICEOP_ERROR, GROUPOP_ERROR, "
    "COMMAND_ERROR, "
    "RELATIONOP_ERROR, RECORD_ERROR, USEROP_ERROR, ROLEOP_ERROR, KEYOP_ERROR)",
    409: "conflict (DEVICEOP_ERROR, GROUPOP_ERROR, USEROP_ERROR, ROLEOP_ERROR; COMMAND_ERROR: "
    "not queued any more), "
    "DEVICE_OFFLINE / DEVICE_BUSY, or ANALYSIS_OFF (no classifier is configured)",
    412: "CONFIG_ERROR: If-Match names a version that is no longer current (the message "
    "says which is)",
    413: "GENERAL_ERROR: the body is over the size limit",
    416: "RECORD_ERROR: the Range cannot be satisfied",
    429: "AUTH_ERROR: too many failed sign-ins; retry after Retry-After seconds",
    502: "CLASSIFIER_ERROR: the classifier failed; nothing was cached, try again",
    503: "DATABASE_ERROR: the database is unreachable; retry later",
    504: "COMMAND_TIMEOUT: the device did not answer in time",
}


def build_document(table: list[Endpoint], title: str, version: str) -> dict[str, Any]:
    keys: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for endpoint in table:
        if endpoint.body_model:
            keys.append((endpoint.body_model, "validation"))
        if endpoint.response_model is not None:
            keys.append((endpoint.response_model, "serialization"))
    refs, definitions = models_json_schema(keys, ref_template=REF)
    schemas = definitions.get("$defs", {})
    schemas["Failure"] = FAILURE

    paths: dict[str, dict[str, Any]] = {}
    for endpoint in table:
        operation: dict[str, Any] = {
            "operationId": endpoint.operation_id,
            "summary": endpoint.summary,
            "description": _permission_text(endpoint.permission),
            "tags": [endpoint.tag],
            "parameters": _parameters(endpoint.path_model, "path")
            + _parameters(endpoint.query_model, "query")
            + _parameters(endpoint.header_model, "header"),
            "responses": {
                str(endpoint.status): _success_response(endpoint, refs),
                **(
                    {"202": {**_success_response(endpoint, refs), "description": endpoint.accepted}}
                    if endpoint.accepted
                    else {}
                ),
                **{
                    str(code): {
                        "description": ERROR_DESCRIPTIONS[code],
                        "content": {
                            "application/json": {"schema": {"$ref": REF.format(model="Failure")}}
                        },
                    }
                    for code in endpoint.errors
                },
            },
        }
        if endpoint.body_model:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": refs[(endpoint.body_model, "validation")]}
                },
            }
        elif endpoint.body_media:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    media: {
                        "schema": endpoint.body_schemas.get(media)
                        or _raw_body(media, endpoint.file_field)
                    }
                    for media in endpoint.body_media
                },
            }
        if endpoint.public:
            operation["security"] = []
        else:
            operation["x-permission"] = endpoint.permission
        paths.setdefault(endpoint.documented_path, {})[endpoint.method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }


def _permission_text(permission: str | None) -> str:
    if permission is None:
        return "Public: no token needed."
    if permission == AUTHENTICATED:
        return "Any signed-in caller (user, API key or bootstrap token)."
    return (
        f"Permission: `{permission}` ({PERMISSIONS[permission]}). A caller holding it only "
        "on some groups sees and changes only their devices; anything else answers 404."
    )


def _success_response(endpoint: Endpoint, refs: dict[Any, Any]) -> dict[str, Any]:
    if endpoint.streams:
        return {
            "description": "a Server-Sent Events stream: `id`, `event` (the type) and "
            "`data` (JSON: event_id, type, device_id, at, data) per event; a comment "
            "every keep-alive interval",
            "content": {media: {"schema": {"type": "string"}} for media in endpoint.media},
        }
    if endpoint.response_model is None:
        binary = {"type": "string", "format": "binary"}
        content = {media: {"schema": binary} for media in endpoint.media}
        return {"description": "success", "content": content}
    schema = _success(refs[(endpoint.response_model, "serialization")])
    return {"description": "success", "content": {"application/json": {"schema": schema}}}


def _raw_body(media: str, file_field: str) -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    if media == "multipart/form-data":
        return {
            "type": "object",
            "required": [file_field],
            "properties": {file_field: binary},
            "additionalProperties": False,
        }
    return binary


def _success(data_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "data"],
        "properties": {"status": {"const": "success"}, "data": data_schema},
    }


def _parameters(model: type[BaseModel] | None, where: str) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        description = prop.pop("description", None)
        prop.pop("title", None)
        prop = _without_null(prop)
        parameter = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": prop,
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter is simply left out of the URL: it is never ``null``."""
    variants = [v for v in prop.get("anyOf", ()) if v != {"type": "null"}]
    if len(variants) == 1:
        rest = {k: v for k, v in prop.items() if k != "anyOf" and (k, v) != ("default", None)}
        return {**variants[0], **rest}
    return prop
