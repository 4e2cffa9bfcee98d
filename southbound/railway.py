"""Compatibility with the clients of the railway data server ("Cyber Railway"):
``POST /api/v1/data/upload`` on the device port takes that server's exact body
and answers its exact shape, storing the upload as a record.

Request::

    {"timestamp": "2025-12-01T09:47:24Z",
     "data": {"id": "det-0001", ...the model's outputs...},
     "metadata": {"source": "camera_07", "version": "1.2"}}

Answer (200)::

    {"success": true, "message": "Data received successfully",
     "data_id": "det-0001", "received_at": "2025-12-01T09:47:24.512000Z"}

and ``{"success": false, "message": …}`` with 400, 401 or 503. The record:
``record_id`` = ``data.id``, ``kind`` = ``metadata.source`` (lower-cased, other
characters than ``[a-z0-9_.-]`` as ``_``), ``at`` = ``timestamp`` (RFC 3339, or
Unix seconds), ``payload`` = the whole body, so nothing of it is lost.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from edgefleet.agent import protocol

_NOT_KIND = re.compile(r"[^a-z0-9_.-]")


class BadUpload(ValueError):
    """The body is not the railway server's upload; ``str(exc)`` says why."""


def read(body: Any) -> protocol.Record:
    if not isinstance(body, dict):
        raise BadUpload("body must be a JSON object")
    data, metadata = body.get("data"), body.get("metadata")
    if not isinstance(data, dict) or "id" not in data:
        raise BadUpload("data.id is required")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("source"), str):
        raise BadUpload("metadata.source is required")
    data_id = data["id"]
    if isinstance(data_id, bool) or not isinstance(data_id, str | int):
        raise BadUpload("data.id must be a string or an integer")
    kind = _NOT_KIND.sub("_", metadata["source"].lower())[:64] or "railway"
    at = _timestamp(body.get("timestamp"))
    raw = {"record_id": str(data_id), "kind": kind, "at": at, "payload": body}
    try:
        return protocol.read_record(raw)
    except protocol.RecordRejected as exc:
        raise BadUpload(exc.message) from exc


def _timestamp(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value  # milliseconds, as some clients send
        return protocol.rfc3339(datetime.fromtimestamp(seconds, UTC))
    if isinstance(value, str) and protocol.parse_rfc3339(value) is not None:
        return value
    raise BadUpload("timestamp must be an RFC 3339 date-time or Unix seconds")


def success(record: protocol.Record, duplicate: bool) -> web.Response:
    return web.json_response(
        {
            "success": True,
            "message": "Data already received" if duplicate else "Data received successfully",
            "data_id": record.payload["data"]["id"],
            "received_at": protocol.rfc3339(datetime.now(UTC)),
        }
    )


def failure(status: int, message: str) -> web.Response:
    return web.json_response({"success": False, "message": message}, status=status)
