"""What both protocol cores (the agent's and the southbound's) hand their adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

E = TypeVar("E")


@dataclass
class Outbox(Generic[E]):
    """Frames to send and events to act on, queued by a sans-I/O core as it handles
    an input and collected by the adapter right after."""

    _outgoing: list[str] = field(default_factory=list, kw_only=True)
    _events: list[E] = field(default_factory=list, kw_only=True)

    def data_to_send(self) -> list[str]:
        frames, self._outgoing = self._outgoing, []
        return frames

    def events_received(self) -> list[E]:
        events, self._events = self._events, []
        return events
