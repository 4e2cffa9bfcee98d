"""The live event stream: the device log, read once per process, fanned out to
every client that may see each event.

Theory of operation
-------------------
The southbound pods write what happens to devices into ``device_events`` (their
recorders, in batches); the controller's REST changes write there too. So the log
is the one place where every pod's events meet, and the stream reads it: one
``EventHub`` per controller process polls it by ``event_id`` every
``poll_interval`` and hands each new event to the subscriptions that want it —
one query per poll, whatever the number of clients.

Ids are handed out when rows are inserted but become visible when their
transaction commits, so on MySQL a later id can be seen before an earlier one.
The hub remembers the ids it skipped (gaps) for ``GAP_PATIENCE`` seconds and
reads them again with every poll: an event committed late is delivered late,
not lost. A gap never filled (a rolled-back transaction) is forgotten.

Each subscription has a bounded queue; the poller never waits for a client. A
client that lets its queue fill is cut off (``abort``), and comes back with
``Last-Event-ID``: the events after it are read from the log, filtered in SQL by
the caller's scope, then the live ones follow. An event's SSE ``id`` never goes
backwards on one connection (a late event carries the highest id sent so far),
so a resume never repeats what was delivered.

``device.status`` events are at most one per device per ``status_interval``. The
log keeps one status per device per ten minutes; a subscription naming one device
gets one per ``status_interval`` from the live status (``status_watch.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select

from edgefleet.controller.settings import StreamSettings
from edgefleet.controller.store import Scope, Store, StoreError
from edgefleet.controller.store.schema import device_events, device_group_members
from edgefleet.controller.store.scope import in_scope

log = logging.getLogger("edgefleet.stream")

STREAM_TYPES = (
    "device.state",
    "device.status",
    "command.result",
    "record.created",
    "config.reported",
    "job.progress",
)
LOG_TO_STREAM = {
    "online": "device.state",
    "unknown": "device.state",
    "offline": "device.state",
    "status_uploaded": "device.status",
    "command_result": "command.result",
    "record_created": "record.created",
    "config_reported": "config.reported",
    "job_progress": "job.progress",
}
"""Device log events (``event``) that the stream carries, and as which type."""
BATCH = 5000
GAP_PATIENCE = 30.0
MAX_GAPS = 10_000


@dataclass(frozen=True)
class StreamEvent:
    event_id: int
    device_id: int
    type: str
    groups: frozenset[int]
    body: bytes
    """The SSE frame after its ``id`` line, encoded once for every client."""
    logged: bool = True
    """False for a live status read from the session (``status_watch.py``): its id
    is the last logged one read, not its own."""

    def frame(self, sse_id: int) -> bytes:
        return b"id: %d\n" % sse_id + self.body


def _instant(at: Any) -> str:
    return at.isoformat(timespec="microseconds") + "Z"


def encode(row: dict[str, Any], kind: str) -> bytes:
    data = dict(row["detail"] or {})
    if kind == "device.state":
        data["state"] = row["event"]
    payload = {
        "event_id": None if row["event_id"] is None else str(row["event_id"]),
        "type": kind,
        "device_id": str(row["device_id"]),
        "at": _instant(row["at"]),
        "data": data,
    }
    text = json.dumps(payload, separators=(",", ":"), default=str)
    return f"event: {kind}\ndata: {text}\n\n".encode()


class StatusPacer:
    """At most one ``device.status`` per device per ``interval`` seconds of log time."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last: dict[int, float] = {}

    def admits(self, row: dict[str, Any]) -> bool:
        if row["event"] != "status_uploaded":
            return True
        at = row["at"].timestamp()
        if at - self._last.get(row["device_id"], float("-inf")) < self._interval:
            return False
        self._last[row["device_id"]] = at
        return True


@dataclass(eq=False)
class Subscription:
    """One client's filters and queue."""

    scope: Scope
    device_id: int | None
    group_id: int | None
    types: frozenset[str]
    limit: int
    abort: Callable[[], None]
    """Cuts the client's connection (it fell behind)."""
    queue: deque[StreamEvent] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    cut: bool = False
    sent_id: int = 0
    """The highest SSE id sent on this connection."""
    replayed: set[int] = field(default_factory=set)
    """Ids sent from the log on resuming: a late event among them comes live too."""

    @property
    def groups(self) -> frozenset[int] | None:
        """The groups whose devices it may see and asked for (None: all)."""
        if self.group_id is None:
            return self.scope
        if self.scope is None or self.group_id in self.scope:
            return frozenset({self.group_id})
        return frozenset()

    def wants(self, event: StreamEvent) -> bool:
        if event.type not in self.types:
            return False
        if self.device_id is not None and event.device_id != self.device_id:
            return False
        groups = self.groups
        return groups is None or not groups.isdisjoint(event.groups)

    def offer(self, event: StreamEvent) -> None:
        if self.cut:
            return
        if len(self.queue) >= self.limit:
            self.cut = True
            self.queue.clear()
            self.abort()
        else:
            self.queue.append(event)
        self.wake.set()

    def take(self) -> bytes:
        """Every queued frame, as one write."""
        frames = []
        while self.queue:
            event = self.queue.popleft()
            if event.logged and event.event_id in self.replayed:
                continue
            self.sent_id = max(self.sent_id, event.event_id)
            frames.append(event.frame(self.sent_id))
        self.wake.clear()
        return b"".join(frames)


async def groups_of(connection: Any, device_ids: set[int]) -> dict[int, frozenset[int]]:
    """The groups of each device, read with the events whoever listens: a client
    limited to groups may subscribe while the events are on their way."""
    found: dict[int, set[int]] = {}
    ids = sorted(device_ids)
    for start in range(0, len(ids), 1000):
        rows = await connection.execute(
            select(device_group_members.c.device_id, device_group_members.c.group_id).where(
                device_group_members.c.device_id.in_(ids[start : start + 1000])
            )
        )
        for device_id, group_id in rows:
            found.setdefault(device_id, set()).add(group_id)
    return {device_id: frozenset(groups) for device_id, groups in found.items()}


class EventHub:
    def __init__(
        self, store: Store, settings: StreamSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.settings = settings
        self._clock = clock
        self.cursor = 0
        """The highest event id read from the log so far."""
        self._gaps: dict[int, float] = {}
        self._pacer = StatusPacer(settings.status_interval)
        self._all: set[Subscription] = set()
        self._everywhere: set[Subscription] = set()
        self._by_group: dict[int, set[Subscription]] = {}
        self._by_device: dict[int, set[Subscription]] = {}
        self.started = asyncio.Event()

    # --- subscriptions -------------------------------------------------------------------

    def subscribe(self, sub: Subscription) -> int:
        """Start delivering to ``sub``; returns the cursor: live events after it
        come through the queue, the log up to it is ``replay``'s."""
        self._all.add(sub)
        slots = list(self._slots(sub))
        for index, key in slots:
            index.setdefault(key, set()).add(sub)
        if sub.device_id is None and sub.groups is None:
            self._everywhere.add(sub)
        return self.cursor

    def unsubscribe(self, sub: Subscription) -> None:
        self._all.discard(sub)
        self._everywhere.discard(sub)
        for index, key in self._slots(sub):
            members = index.get(key)
            if members is not None:
                members.discard(sub)
                if not members:
                    del index[key]

    def _slots(self, sub: Subscription) -> Iterable[tuple[dict[int, set[Subscription]], int]]:
        """Where ``sub`` is filed: under its device, else under each of its groups."""
        if sub.device_id is not None:
            yield self._by_device, sub.device_id
        elif sub.groups is not None:
            for group_id in sub.groups:
                yield self._by_group, group_id

    def watchers(self, kind: str) -> dict[int, list[Subscription]]:
        """The subscriptions naming one device that want ``kind``, by device."""
        found: dict[int, list[Subscription]] = {}
        for device_id, subs in self._by_device.items():
            wanting = [sub for sub in subs if kind in sub.types and not sub.cut]
            if wanting:
                found[device_id] = wanting
        return found

    @property
    def subscribers(self) -> int:
        return len(self._all)

    def close_all(self) -> None:
        """End every stream (the process is shutting down)."""
        for sub in list(self._all):
            sub.cut = True
            sub.wake.set()

    # --- the poller ------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll the log until cancelled; a database outage only delays events."""
        while True:
            try:
                async with self.store.db.read() as connection:
                    newest = await connection.scalar(select(func.max(device_events.c.event_id)))
                self.cursor = newest or 0
                break
            except StoreError as exc:
                log.warning("event stream waits for the database", extra={"error": str(exc)})
                await asyncio.sleep(1.0)
        self.started.set()
        while True:
            try:
                full = await self.poll()
            except StoreError as exc:
                log.warning("event stream could not read the log", extra={"error": str(exc)})
                full = False
                await asyncio.sleep(1.0)
            if not full:
                await asyncio.sleep(self.settings.poll_interval)

    async def poll(self) -> bool:
        """Read and deliver what is new; True when a whole batch came (read again)."""
        now = self._clock()
        self._gaps = {i: t for i, t in self._gaps.items() if now - t < GAP_PATIENCE}
        condition = device_events.c.event_id > self.cursor
        if self._gaps:
            condition = or_(condition, device_events.c.event_id.in_(sorted(self._gaps)))
        query = select(device_events).where(condition).order_by(device_events.c.event_id)
        async with self.store.db.read() as connection:
            rows = [dict(row) for row in (await connection.execute(query.limit(BATCH))).mappings()]
            wanted = [row for row in rows if row["event"] in LOG_TO_STREAM]
            groups = await groups_of(connection, {row["device_id"] for row in wanted})
        self._advance(rows, now)
        for row in wanted:
            if self._pacer.admits(row):
                kind = LOG_TO_STREAM[row["event"]]
                member_of = groups.get(row["device_id"], frozenset())
                event = StreamEvent(
                    row["event_id"], row["device_id"], kind, member_of, encode(row, kind)
                )
                for sub in self._candidates(event):
                    if sub.wants(event):
                        sub.offer(event)
        return len(rows) == BATCH

    def _advance(self, rows: list[dict[str, Any]], now: float) -> None:
        """Move the cursor past ``rows``; remember the ids skipped on the way."""
        for row in rows:
            event_id = row["event_id"]
            self._gaps.pop(event_id, None)
            if event_id > self.cursor:
                for missing in range(self.cursor + 1, min(event_id, self.cursor + 1 + MAX_GAPS)):
                    self._gaps[missing] = now
                self.cursor = event_id
        if len(self._gaps) > MAX_GAPS:
            for stale in sorted(self._gaps)[: len(self._gaps) - MAX_GAPS]:
                del self._gaps[stale]

    def _candidates(self, event: StreamEvent) -> set[Subscription]:
        candidates = set(self._everywhere)
        candidates |= self._by_device.get(event.device_id, set())
        for group_id in event.groups:
            candidates |= self._by_group.get(group_id, set())
        return candidates

    # --- resuming ----------------------------------------------------------------------------

    async def replay(self, sub: Subscription, after: int, until: int) -> list[StreamEvent]:
        """The logged events ``after`` < id <= ``until`` that ``sub`` may see and
        wants, in order (at most ``sub.limit``: a client further behind resumes
        again from the last one it gets)."""
        logged = [event for event, kind in LOG_TO_STREAM.items() if kind in sub.types]
        conditions = [
            device_events.c.event_id > after,
            device_events.c.event_id <= until,
            device_events.c.event.in_(logged),
        ]
        if sub.device_id is not None:
            conditions.append(device_events.c.device_id == sub.device_id)
        if sub.groups is not None:
            conditions.append(in_scope(device_events.c.device_id, sub.groups))
        query = select(device_events).where(*conditions).order_by(device_events.c.event_id)
        pacer = StatusPacer(self.settings.status_interval)
        async with self.store.db.read() as connection:
            rows = [
                dict(row) for row in (await connection.execute(query.limit(sub.limit))).mappings()
            ]
        events = []
        for row in rows:
            if pacer.admits(row):
                kind = LOG_TO_STREAM[row["event"]]
                events.append(
                    StreamEvent(
                        row["event_id"], row["device_id"], kind, frozenset(), encode(row, kind)
                    )
                )
        return events
