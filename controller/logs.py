"""Structured logs: one event per line, as JSON or key=value.

Every line has ``time`` (UTC, RFC 3339), ``level``, ``logger`` and ``msg``; call
sites add their fields with ``extra=``::

    log.info("device registered", extra={"device_id": 42})

Only values that are JSON by nature are copied from ``extra`` — text, numbers,
booleans, null, and lists and objects of them. Anything else is left out: kopf, for
one, puts its whole ``OperatorSettings`` object (1.8 KB of repr with memory
addresses) on every record it logs.

``--log-format auto`` (the default) writes JSON when stderr is not a terminal (a
container, a service, a pipe) and key=value text when a person is watching.

Secrets are never passed; there is no filtering here to rely on.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from datetime import UTC, datetime

from edgefleet.controller.settings import LogSettings

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_MAX_DEPTH = 8

# Libraries that log at INFO for every connection, probe or scrape.
QUIET = ("aiohttp.access", "websockets", "alembic.runtime.plugins")


def loggable(value: object, depth: int = 0) -> bool:
    """Whether ``value`` is JSON as it is: no repr, no conversion."""
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if depth >= _MAX_DEPTH:
        return False
    if isinstance(value, (list, tuple)):
        return all(loggable(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and loggable(v, depth + 1) for k, v in value.items())
    return False


def fields(record: logging.LogRecord) -> dict[str, object]:
    at = datetime.fromtimestamp(record.created, UTC)
    line: dict[str, object] = {
        "time": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in record.__dict__.items():
        if key not in _STANDARD and key not in line and loggable(value):
            line[key] = value
    if record.exc_info:
        line["exception"] = logging.Formatter().formatException(record.exc_info)
    return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(fields(record), ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = fields(record)
        exception = line.pop("exception", None)
        text = " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in line.items())
        return f"{text}\n{exception}" if exception else text


def formatter(log_format: str, terminal: bool) -> logging.Formatter:
    """``json`` and ``text`` force; ``auto`` is text on a terminal, JSON elsewhere."""
    if log_format == "text" or (log_format == "auto" and terminal):
        return KeyValueFormatter()
    return JsonFormatter()


def configure(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings.format, sys.stderr.isatty()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
