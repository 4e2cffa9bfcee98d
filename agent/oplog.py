"""The device's local operation log: logins, uploads, commands, reconnects.

Written by a background thread (``QueueListener``) so that file I/O never runs on
the event loop, rotated every 3 days, and scrubbed of secrets: every line passes a
formatter that replaces the password and the current token with ``***``, a second
line of defence behind never logging them in the first place.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
import time
from pathlib import Path

LOG_NAME = "agent.log"
ROTATE_DAYS = 3
KEEP_ROTATED = 2

logger = logging.getLogger("edgefleet.agent")


class Scrubbed(logging.Formatter):
    """A formatter that never lets a known secret through."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
        self.converter = time.gmtime
        self.secrets: set[str] = set()

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for secret in self.secrets:
            line = line.replace(secret, "***")
        return line


class OperationLog:
    """Owns the handlers; ``start`` before the agent runs, ``stop`` flushes them."""

    def __init__(self, directory: Path | None, stderr: bool = True) -> None:
        self.directory = directory
        self.formatter = Scrubbed()
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        handlers: list[logging.Handler] = []
        self.file: logging.handlers.TimedRotatingFileHandler | None = None
        """The log file's handler (rotated every ``ROTATE_DAYS``), when there is one."""
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self.file = logging.handlers.TimedRotatingFileHandler(
                directory / LOG_NAME,
                when="D",
                interval=ROTATE_DAYS,
                backupCount=KEEP_ROTATED,
                utc=True,
                encoding="utf-8",
            )
            handlers.append(self.file)
        if stderr:
            handlers.append(logging.StreamHandler(sys.stderr))
        for handler in handlers:
            handler.setFormatter(self.formatter)
        self._handlers = handlers
        self._listener = logging.handlers.QueueListener(self._queue, *handlers)
        self._queue_handler = logging.handlers.QueueHandler(self._queue)
        self._running = False

    def hide(self, *secrets: str | None) -> None:
        self.formatter.secrets.update(s for s in secrets if s)

    def files(self) -> list[Path]:
        """The log and its rotated predecessors, oldest first."""
        if self.directory is None:
            return []
        rotated = sorted(self.directory.glob(LOG_NAME + ".*"))
        return [*rotated, self.directory / LOG_NAME]

    def start(self) -> None:
        logger.addHandler(self._queue_handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        self._listener.start()
        self._running = True

    def stop(self) -> None:
        """Flush and close: called before exit and before a restart re-execs."""
        if not self._running:
            return
        self._running = False
        logger.removeHandler(self._queue_handler)
        self._listener.stop()
        for handler in self._handlers:
            handler.close()
