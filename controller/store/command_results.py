"""Results of sent commands, written to the history in batches.

Both paths that send commands write their results here: the live one
(``controller.commands``), which answers its caller before the result's commit,
and the queued deliveries (``southbound.queued_commands``), which wait for each
result's commit before they send the next command.

A rollout delivers to thousands of devices at once, and one transaction per
result filled the connection pool until writes waited past their deadline
(``bench/jobs.py``: 439 results lost in one run, each then counted as timed out
though its device had answered). Results that arrive while one batch is written
go in the next, with the audit entries that belong to them, so a batch is one
commit however many commands it ends. A result is known, so a database outage
only delays it: its batch is written again once the database answers.

Whoever reads the history waits for ``settled`` first: a command whose caller
already has its result never reads as ``sent``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgefleet.agent.protocol import CommandResult
from edgefleet.controller.store.audit import AuditEntry
from edgefleet.controller.store.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from edgefleet.controller.store import Store

log = logging.getLogger("edgefleet.command_results")


@dataclass
class _Pending:
    result: CommandResult
    audit: AuditEntry | None
    written: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ResultWriter:
    def __init__(self, store: Store, retry_delay: float) -> None:
        self._store = store
        self._retry_delay = retry_delay
        self._waiting: dict[int, _Pending] = {}
        """The next batch."""
        self._writing: dict[int, _Pending] = {}
        """The batch being written now."""
        self._running: asyncio.Task[None] | None = None

    def put(
        self, command_id: int, result: CommandResult, audit: AuditEntry | None = None
    ) -> asyncio.Future[None]:
        """Have the result (and the command's audit entry) written; returns at once,
        with a future done once they are committed."""
        pending = _Pending(result, audit)
        pending.written.add_done_callback(_retrieve)
        self._waiting[command_id] = pending
        if self._running is None:
            self._running = asyncio.create_task(self._drain(), name="command-results")
        return pending.written

    async def write(
        self, command_id: int, result: CommandResult, audit: AuditEntry | None = None
    ) -> None:
        """Write the result and wait for its commit."""
        await self.put(command_id, result, audit)

    async def settled(self, command_id: int | None, timeout: float) -> None:
        """Wait (``timeout`` seconds at most) until the result of ``command_id``, or
        with None every result taken so far, is committed or given up on."""
        batches = (self._writing, self._waiting)
        if command_id is None:
            futures = {p.written for batch in batches for p in batch.values()}
        else:
            futures = {b[command_id].written for b in batches if command_id in b}
        if futures:
            await asyncio.wait(futures, timeout=timeout)

    async def close(self, wait: float = 0.0) -> None:
        """Stop writing, after ``wait`` seconds at most for what is taken. A
        transaction left open when the loop ends would hold its database (SQLite's
        write lock) for whoever comes next, so what is left then is not written."""
        if self._running is None:
            return
        await asyncio.wait({self._running}, timeout=wait)
        if self._running is not None:
            self._running.cancel()
            await asyncio.gather(self._running, return_exceptions=True)
        lost = {**self._writing, **self._waiting}
        if lost:
            log.warning("command results not written", extra={"results": len(lost)})
        for pending in lost.values():
            pending.written.cancel()
        self._writing, self._waiting = {}, {}

    async def _drain(self) -> None:
        try:
            while self._waiting:
                self._writing, self._waiting = self._waiting, {}
                batch = self._writing
                results = [(command_id, p.result.status, p.result.message, p.result.data)
                           for command_id, p in batch.items()]  # fmt: skip
                audits = [p.audit for p in batch.values() if p.audit is not None]
                try:
                    await self._store.commands.finish_many(results, audits)
                except DatabaseUnavailable:
                    log.warning("command results wait for the database",
                                extra={"results": len(batch)})  # fmt: skip
                    self._waiting = {**batch, **self._waiting}
                    self._writing = {}
                    await asyncio.sleep(self._retry_delay)
                    continue
                except Exception as exc:
                    log.exception("command results not written", extra={"results": len(batch)})
                    self._settle(batch, exc)
                    continue
                self._settle(batch, None)
        finally:
            self._running = None

    def _settle(self, batch: dict[int, _Pending], error: Exception | None) -> None:
        for pending in batch.values():
            if pending.written.done():
                continue
            if error is None:
                pending.written.set_result(None)
            else:
                pending.written.set_exception(error)
        if self._writing is batch:
            self._writing = {}


def _retrieve(future: asyncio.Future[None]) -> None:
    """A result put without waiting for it: its failure was logged by the writer,
    not left for the loop to report as never retrieved."""
    if not future.cancelled():
        future.exception()
