"""Structured logs: one event per line, as JSON or key=value.

Call sites pass their fields with ``extra=``::

    log.info("device registered", extra={"device_id": 42})

Secrets are never passed; there is no filtering here to rely on.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from edgefleet.controller.settings import LogSettings

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields: dict[str, object] = {
        "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": record.getMessage(),
    }
    fields.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
    if record.exc_info:
        fields["exception"] = logging.Formatter().formatException(record.exc_info)
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        exception = fields.pop("exception", None)
        line = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in fields.items())
        return f"{line}\n{exception}" if exception else line


def configure(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())
    # aiohttp's own access log would repeat what our request middleware logs.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
