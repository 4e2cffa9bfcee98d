"""The southbound's background tasks, started, cancelled and awaited in one place.

Not an ``asyncio.TaskGroup``: a TaskGroup must be entered and left by the same
task, and the southbound is started and stopped by different ones (an
application's start-up and shutdown hooks, a test fixture's set-up and
tear-down). A task that dies is logged at once, not when the process ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("edgefleet.southbound")


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "background task died", exc_info=task.exception(), extra={"task": task.get_name()}
            )

    async def cancel(self, task: asyncio.Task[Any] | None = None) -> None:
        """Cancel one task, or all, and wait until they have ended."""
        tasks = [task] if task is not None else list(self._tasks)
        for each in tasks:
            each.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
