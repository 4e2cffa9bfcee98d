"""Queued commands delivered to their device after it logs in (FLEET.md).

A listener of the session events, with one task of its own. A device that logs in
here, that is heard from again after it went unknown, or whose queue the
controller says grew (``deliver``) is noted; the task asks the database, for all
the devices noted since its last round in one query, which of them have anything
queued, and starts one delivery per such device.

A delivery takes the device's commands one at a time, oldest first: it claims one
(``CommandStore.claim``: queued → sent, atomically, so no other instance or
restart can send it again), sends it through the session table exactly like a
live command (``request_id``, busy, timeouts), and writes its result (in batches
shared by the deliveries, ``ResultWriter``). A command refused before anything
was sent (the device left, went unknown, or is busy with another one) goes back
to the queue unsent: at its next login for a device that left, when it is heard
from again for one that went unknown (its session never ended: no login comes),
after ``busy_retry`` seconds for a busy one. A claim can also commit while the
delivery sees it fail (the database deadline fired during the commit): nothing was
sent, and since the instance knows what it is sending, its next claim for the device
puts such a command back first (a 10,000-device reconnect storm left 118 commands
``sent`` and never delivered before). A southbound stopped in the middle of a
delivery leaves the command ``sent``: it is never sent again, and ends
``timed_out`` when the instance starts again (``abandon``) or, should it never
come back, once its deadline passed.
"""

from __future__ import annotations

import asyncio
import logging

from edgefleet.agent.protocol import CommandRefused
from edgefleet.controller.store import DatabaseUnavailable, Store
from edgefleet.controller.store.command_results import ResultWriter
from edgefleet.southbound.events import LoggedIn, SessionEvents, StateChanged
from edgefleet.southbound.sessions import SessionTable

log = logging.getLogger("edgefleet.southbound.queue")

BUSY_RETRY = 1.0
CHUNK = 1000


class QueuedDelivery:
    def __init__(
        self,
        store: Store,
        sessions: SessionTable,
        instance: str,
        busy_retry: float = BUSY_RETRY,
        retry_delay: float = 1.0,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._instance = instance
        self._busy_retry = busy_retry
        self._retry_delay = retry_delay
        self._noted: dict[int, None] = {}
        self._wake = asyncio.Event()
        self._deliveries: dict[int, asyncio.Task[None]] = {}
        self._again: set[int] = set()
        """Devices noted while their delivery ran: looked at again when it ends."""
        self._sending: dict[int, set[int]] = {}
        """By device: commands claimed here and handed to its session, whose result
        is not yet stored (or never will be: its write failed). Any other command
        this instance claimed was never sent, and the device's next claim requeues
        it."""
        self._results = ResultWriter(store, retry_delay)

    def subscribe(self, events: SessionEvents) -> None:
        events.on(LoggedIn, lambda event: self.deliver(event.device.device_id))
        events.on(StateChanged, self._heard_again)

    def _heard_again(self, change: StateChanged) -> None:
        if change.state == "online":  # back from unknown
            self.deliver(change.device_id)

    def deliver(self, device_id: int) -> None:
        """Deliver the device's queue if its session is here (now, or after its login)."""
        self._noted[device_id] = None
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                noted = [d for d in self._noted if d in self._sessions]
                self._noted.clear()
                try:
                    waiting = []
                    for start in range(0, len(noted), CHUNK):
                        waiting += await self._store.commands.waiting(
                            noted[start : start + CHUNK], self._instance
                        )
                except Exception as exc:  # the database is away, or the query failed
                    log.warning("queued commands wait", extra={"error": type(exc).__name__})
                    for device_id in noted:
                        self._noted[device_id] = None
                    await asyncio.sleep(self._retry_delay)
                    self._wake.set()
                    continue
                for device_id in waiting:
                    if device_id in self._deliveries:
                        self._again.add(device_id)
                    else:
                        task = asyncio.create_task(
                            self._deliver(device_id), name=f"queued-{device_id}"
                        )
                        self._deliveries[device_id] = task
                        task.add_done_callback(lambda _t, d=device_id: self._ended(d))
        finally:
            deliveries = list(self._deliveries.values())
            for task in deliveries:
                task.cancel()
            await asyncio.gather(*deliveries, return_exceptions=True)
            await self._results.close()

    def _ended(self, device_id: int) -> None:
        task = self._deliveries.pop(device_id, None)
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error("queued delivery failed", exc_info=task.exception())
        if device_id in self._again:
            self._again.discard(device_id)
            self.deliver(device_id)

    async def _deliver(self, device_id: int) -> None:
        while device_id in self._sessions:
            try:
                command = await self._store.commands.claim(
                    device_id, self._instance, self._sending.get(device_id, ())
                )
            except DatabaseUnavailable:
                self.deliver(device_id)  # once the database is back
                return
            if command is None:
                return
            command_id = command["command_id"]
            self._sending.setdefault(device_id, set()).add(command_id)
            try:
                result = await self._sessions.command(
                    device_id, command["order"], command["params"], command["timeout"]
                )
            except CommandRefused as refused:
                await self._put_back(device_id, command_id)
                if refused.kind != "busy":
                    return  # it left or went unknown: the rest waits for its return
                await asyncio.sleep(self._busy_retry)
                continue
            await self._results.write(command_id, result)
            self._settled(device_id, command_id)

    async def _put_back(self, device_id: int, command_id: int) -> None:
        """Return a command refused before it was sent to the queue. Retried until
        the database answers: left ``sent``, only this instance's next claim for
        the device would find it, and the device may log in elsewhere first."""
        while True:
            try:
                await self._store.commands.unclaim(command_id)
            except DatabaseUnavailable:
                await asyncio.sleep(self._retry_delay)
                continue
            self._settled(device_id, command_id)
            return

    def _settled(self, device_id: int, command_id: int) -> None:
        """The command is no longer being sent: its result is stored, or it is back
        in the queue."""
        sending = self._sending.get(device_id)
        if sending is not None:
            sending.discard(command_id)
            if not sending:
                del self._sending[device_id]
