"""Bulk import and export of devices, as CSV (with a header row) or JSON lines.

Both formats carry the same columns: a device's fields as ``POST /devices`` takes
them, ``labels`` (in CSV: ``key=value`` pairs separated by commas) and, on import
only, ``password``. The read-only columns an export adds (``device_id``, ``state``,
timestamps…) are ignored on import, so an exported file imports as it is.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from edgefleet.controller.api.context import caller, context, scope
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.errors import ApiError, ErrorType, bad_request
from edgefleet.controller.api.routing import describe_validation_error
from edgefleet.controller.api.schemas import (
    Device,
    DeviceCreate,
    ExportQuery,
    ImportResult,
    ImportRowResult,
)
from edgefleet.controller.bulk_import import ImportRow
from edgefleet.controller.store import DeviceFilter
from edgefleet.controller.store.selectors import parse_selector

TAG = "bulk"
CSV = "text/csv"
JSON_LINES = ("application/x-ndjson", "application/jsonl")
MAX_IMPORT_BYTES = 32 * 1024 * 1024
MAX_IMPORT_ROWS = 100_000
EXPORT_PAGE = 1000

COLUMNS = [name for name in DeviceCreate.model_fields if name != "password"]
READ_ONLY = set(Device.model_fields) - set(COLUMNS)
"""Columns of an export that an import skips."""
EXPORT_COLUMNS = ["device_id", *COLUMNS, *sorted(READ_ONLY - {"device_id"})]
TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no"}
_OPTIONAL = "|".join(sorted({*COLUMNS, *READ_ONLY, "password"}))
BODY_SCHEMAS = {
    CSV: {
        "type": "string",
        "pattern": rf"^name,hardware_sn,hardware_model(,({_OPTIONAL}))*(\r?\n[^\x00]*)?$",
        "example": 'name,hardware_sn,hardware_model,labels\ncam-1,SN1,M1,"site=c,tier=edge"\n',
        "description": "A header row naming the columns (name, hardware_sn and "
        "hardware_model at least; the server takes them in any order), then one device "
        "per row. `labels` is "
        "`key=value` pairs separated by commas; `disabled` is true or false.",
    },
    **{
        media: {
            "type": "string",
            "format": "binary",
            "description": "One JSON object per line, with the fields of POST /devices "
            "(`labels` an object).",
        }
        for media in JSON_LINES
    },
}


@endpoints.post(
    "/devices/import",
    summary="Register many devices from CSV (header row) or JSON lines; one result per row",
    tag=TAG,
    errors=(413,),
    body_media=BODY_SCHEMAS,
    permission="devices:write",
)
async def import_devices(request: web.Request) -> ImportResult:
    body = await _body(request)
    rows = list(_csv_rows(_text(body)) if request.content_type == CSV else _json_rows(body))
    if len(rows) > MAX_IMPORT_ROWS:
        raise ApiError(
            413, ErrorType.GENERAL_ERROR, f"body: at most {MAX_IMPORT_ROWS} rows per import"
        )
    outcomes = await context(request).imports.run(caller(request), rows)
    results = [
        ImportRowResult(
            row=o.row,
            status="failed" if o.message else "registered",
            device_id=o.device_id,
            password=o.password,
            message=o.message,
        )
        for o in outcomes
    ]
    registered = sum(r.status == "registered" for r in results)
    return ImportResult(
        rows=len(results), registered=registered, failed=len(results) - registered, results=results
    )


async def _body(request: web.Request) -> bytes:
    if request.content_type not in (CSV, *JSON_LINES):
        raise bad_request(
            f"body: Content-Type must be {CSV} or {JSON_LINES[0]}, not {request.content_type!r}"
        )
    data = bytearray()
    while chunk := await request.content.read(64 * 1024):
        data += chunk
        if len(data) > MAX_IMPORT_BYTES:
            raise ApiError(
                413, ErrorType.GENERAL_ERROR, f"body: the file is over {MAX_IMPORT_BYTES} bytes"
            )
    return bytes(data)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise bad_request(f"body: not UTF-8 text (byte {exc.start})") from exc


def _row(number: int, values: dict[str, Any]) -> ImportRow:
    """A record as a device's columns, or why it cannot be one."""
    values = {k: v for k, v in values.items() if k not in READ_ONLY}
    try:
        device = DeviceCreate.model_validate(values)
    except ValidationError as exc:
        return ImportRow(number, None, describe_validation_error(exc, f"row {number}"))
    columns = device.model_dump(exclude_unset=True)
    columns.setdefault("labels", {})
    columns.setdefault("type", device.type)
    return ImportRow(number, columns)


def _csv_rows(text: str) -> Iterator[ImportRow]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    unknown = [name for name in header if name not in {*COLUMNS, *READ_ONLY, "password"}]
    if unknown:
        raise bad_request(f"body: unknown CSV column {unknown[0]!r}")
    missing = [name for name in ("name", "hardware_sn", "hardware_model") if name not in header]
    if missing:
        raise bad_request(f"body: the CSV header has no column {missing[0]!r}")
    number = 0
    for record in _records(reader):
        number += 1
        if None in record:
            yield ImportRow(number, None, f"row {number}: more cells than the header has")
            continue
        values: dict[str, Any] = {k: v for k, v in record.items() if v not in ("", None)}
        try:
            if "disabled" in values:
                values["disabled"] = _boolean(values["disabled"])
            if "labels" in values:
                values["labels"] = parse_labels(values["labels"])
        except ValueError as exc:
            yield ImportRow(number, None, f"row {number}: {exc}")
            continue
        yield _row(number, values)


def _records(reader: csv.DictReader[str]) -> Iterator[dict[str, Any]]:
    try:
        yield from reader
    except csv.Error as exc:
        raise bad_request(f"body: CSV line {reader.line_num}: {exc}") from exc


def _boolean(text: str) -> bool:
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise ValueError(f"disabled must be true or false, not {text!r}")


def parse_labels(text: str) -> dict[str, str]:
    """``key=value,key=value`` (a CSV cell) as a map; the pairs are checked later."""
    labels = {}
    for pair in text.split(","):
        key, equals, value = pair.strip().partition("=")
        if not equals:
            raise ValueError(f"labels: {pair.strip()!r} is not key=value")
        labels[key.strip()] = value.strip()
    return labels


def format_labels(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _json_rows(body: bytes) -> Iterator[ImportRow]:
    """Each line on its own: one that is not UTF-8 or not JSON is one failed row."""
    number = 0
    for line in body.removeprefix(b"\xef\xbb\xbf").splitlines():
        if not line.strip():
            continue
        number += 1
        try:
            record = json.loads(line.decode())
        except UnicodeDecodeError as exc:
            yield ImportRow(number, None, f"row {number}: not UTF-8 text (byte {exc.start})")
            continue
        except ValueError as exc:
            yield ImportRow(number, None, f"row {number}: invalid JSON: {exc}")
            continue
        if not isinstance(record, dict):
            yield ImportRow(number, None, f"row {number}: must be a JSON object")
            continue
        yield _row(number, record)


@endpoints.get(
    "/devices/export",
    summary="Every matching device as CSV or JSON lines, streamed (no secrets)",
    tag=TAG,
    media=(CSV, JSON_LINES[0]),
    permission="devices:read",
)
async def export_devices(request: web.Request, query: ExportQuery) -> web.StreamResponse:
    where = DeviceFilter(
        state=query.state,
        type=query.type,
        group_id=query.group,
        text=query.q,
        selector=parse_selector(query.selector) if query.selector is not None else None,
        scope=scope(request),
    )
    media = CSV if query.format == "csv" else JSON_LINES[0]
    extension = "csv" if query.format == "csv" else "jsonl"
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{media}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="devices.{extension}"',
        }
    )
    pages = context(request).store.devices.pages(where, EXPORT_PAGE)
    # The first page is read before the answer begins, so a database that is away
    # gets the usual 503; one that goes away later breaks the stream off (envelope).
    page = await anext(pages, None)
    await response.prepare(request)
    if query.format == "csv":
        await response.write(_csv_line(EXPORT_COLUMNS))
    while page is not None:
        devices = [Device(**row).model_dump(mode="json") for row in page]
        if query.format == "csv":
            chunk = b"".join(_csv_line(_csv_cells(device)) for device in devices)
        else:
            chunk = b"".join(json.dumps(device).encode() + b"\n" for device in devices)
        await response.write(chunk)
        page = await anext(pages, None)
    await response.write_eof()
    return response


def _csv_cells(device: dict[str, Any]) -> list[str]:
    cells = []
    for column in EXPORT_COLUMNS:
        value = device[column]
        if column == "labels":
            value = format_labels(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        cells.append("" if value is None else str(value))
    return cells


def _csv_line(cells: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue().encode()
