"""The session table: which connection holds each logged-in device on this instance.

It is the one place a session begins and ends. ``attach`` makes a newer login win
over an older session of the same device (PROTOCOL.md: the older is closed with
4000, "superseded") and announces ``LoggedIn``; ``detach`` announces ``Left`` once,
however often it is called — the connection calls it when its session closes, and
again, to be sure, when its handler exits for any reason (a crash included), so no
session outlives its connection. Commands to a device go through here too, so the
command path has one entry and announces what it sent and what came back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from typing import Any, Protocol

from edgefleet.agent.protocol import CommandRefused, CommandResult
from edgefleet.southbound.events import (
    CommandFinished,
    CommandNotSent,
    CommandSent,
    DeviceIdentity,
    Left,
    LoggedIn,
    SessionEvents,
)
from edgefleet.southbound.session import CLOSE_POLICY, CLOSE_SUPERSEDED


class Held(Protocol):
    """What the table needs of a connection."""

    @property
    def peer(self) -> str: ...

    async def end(self, cause: str, code: int, reason: str) -> None:
        """Close the session from the server side; detaches it before returning."""

    async def send_command(
        self, order: str, params: dict[str, Any], timeout: float
    ) -> Awaitable[CommandResult]:
        """Send the command (raises ``CommandRefused``) and return its result to come."""

    async def send_config(self, version: int, config: dict[str, Any]) -> bool:
        """Send a ``config_update``; False when the device cannot take one."""


class SessionTable:
    def __init__(self, events: SessionEvents) -> None:
        self._events = events
        self._held: dict[int, Held] = {}
        self.closing = False
        """Shutting down: no session is attached any more (see ``end_all``)."""

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, device_id: int) -> bool:
        return device_id in self._held

    def items(self) -> Iterator[tuple[int, Held]]:
        return iter(list(self._held.items()))

    async def attach(
        self, held: Held, device: DeviceIdentity, by_token: bool, extensions: frozenset[str]
    ) -> bool:
        """A login was accepted. An older session of the device is ended first, so
        its ``Left`` is announced before this ``LoggedIn``. False when the table is
        closing: a login whose check ends during shutdown gets no session."""
        if self.closing:
            return False
        device_id = device.device_id
        # Another login of the same device may attach while the older one ends:
        # whichever holds the slot when this one's turn comes is ended too.
        while (older := self._held.get(device_id)) is not None and older is not held:
            await older.end("superseded", CLOSE_SUPERSEDED, "superseded")
            self.detach(older, device_id, "superseded")
            if self.closing:  # the shutdown began while the older one was ending
                return False
        self._held[device_id] = held
        self._events.publish(LoggedIn(device, held.peer, by_token, extensions, time.time()))
        return True

    def detach(self, held: Held, device_id: int, cause: str) -> None:
        """The session ended; a no-op for a connection that no longer holds it."""
        if self._held.get(device_id) is held:
            del self._held[device_id]
            self._events.publish(Left(device_id, cause, time.time()))

    async def command(
        self, device_id: int, order: str, params: dict[str, Any], timeout: float
    ) -> CommandResult:
        """Send a command and wait for its result; raises ``CommandRefused``."""
        try:
            held = self._held.get(device_id)
            if held is None:
                raise CommandRefused("offline")
            result = await held.send_command(order, params, timeout)
        except CommandRefused as refused:
            self._events.publish(CommandNotSent(device_id, order, refused.kind))
            raise
        self._events.publish(CommandSent(device_id, order))
        started = time.perf_counter()
        outcome = await result
        self._events.publish(
            CommandFinished(device_id, order, outcome, time.perf_counter() - started)
        )
        return outcome

    async def send_config(self, device_id: int, version: int, config: dict[str, Any]) -> bool:
        """Send the device its configuration; False when no session here can take it."""
        held = self._held.get(device_id)
        return held is not None and await held.send_config(version, config)

    async def disconnect(self, device_id: int, reason: str) -> None:
        """End a device's session because the device was disabled or deleted."""
        if (held := self._held.get(device_id)) is not None:
            await held.end(reason, CLOSE_POLICY, f"device {reason}")

    async def end_all(self, cause: str, code: int, reason: str) -> None:
        """End every session at once and attach none from now on (shutting down).
        Each waits for its peer's closing handshake, so they end together."""
        self.closing = True
        ending = [held.end(cause, code, reason) for _, held in self.items()]
        await asyncio.gather(*ending, return_exceptions=True)
