"""bcrypt checks under any load: a bounded number at once, admitted by the wait.

Theory of operation
-------------------
A password check costs one core about 0.25 s at bcrypt cost 12, so a core checks
four a second. A reconnect storm of version-1 devices asks for hundreds. Queued
first-come-first-served without limit, every check waits behind all the others;
devices give up waiting (the field's devices wait 60 s, then retry 10 s later),
and the server spends all its CPU checking passwords whose devices are gone, so
no login succeeds any more: goodput falls to zero and stays there (a metastable
failure). Three rules keep goodput at the core's capacity whatever the load:

1. **Admission by expected wait.** A check is taken only if it can start within
   ``max_wait`` seconds: the queue ahead of it, divided among the ``workers``,
   times the measured cost of one check (a moving average of how long the last
   checks took, contention included). Otherwise it is refused at once
   (``Overloaded``: the device is told "server busy", close 1013, and tries again
   later) instead of waiting for an answer nobody will read.
2. **No work for the gone.** When a slot frees, the next waiting check is
   asked whether it is still wanted (its connection still open); those that are
   not are dropped (``Abandoned``) before they reach bcrypt.
3. **Order.** ``fifo`` serves the oldest admitted check first; with admission
   bounding the wait, every admitted check starts within ``max_wait``. ``lifo``
   serves the newest first, which under overload gives the freshest requests the
   best chance and lets the oldest be dropped as their devices leave. (The
   default was chosen by ``bench/login_overload.py``; see the README.)

The checks run in worker threads (``asyncio.to_thread``), never on the loop, and
no more than ``workers`` at once, so a storm never fills the default executor:
stopping the process does not wait for thousands of queued hashes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import bcrypt


class Overloaded(Exception):
    """The check could not start within the longest useful wait."""


class Abandoned(Exception):
    """The connection that asked for the check went away before its turn."""


@dataclass(frozen=True)
class Checked:
    matches: bool
    waited: float
    """Seconds the check waited for its turn."""


@dataclass
class _Waiting:
    turn: asyncio.Future[None]
    wanted: Callable[[], bool]
    since: float


class PasswordChecks:
    def __init__(
        self,
        workers: int,
        max_wait: float,
        cost: float,
        order: str = "fifo",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``cost``: the first estimate of one check's seconds (measured by the caller)."""
        if order not in ("fifo", "lifo"):
            raise ValueError(f"order must be fifo or lifo, not {order!r}")
        self.workers = workers
        self.max_wait = max_wait
        self.cost = cost
        self.order = order
        self._clock = clock
        self._running = 0
        self.most_running = 0
        """The most checks that ever ran at once: never more than ``workers``."""
        self._waiting: deque[_Waiting] = deque()
        self.abandoned = 0
        self.overloaded = 0
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> int:
        return self._running

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def expected_wait(self) -> float:
        """Seconds a check asked for now would wait before it starts."""
        if self._running < self.workers:
            return 0.0
        return (len(self._waiting) // self.workers + 1) * self.cost

    async def check(self, password: bytes, hashed: bytes, wanted: Callable[[], bool]) -> Checked:
        """Check the password against the bcrypt hash, or raise ``Overloaded`` (no
        turn within ``max_wait``) or ``Abandoned`` (not ``wanted()`` any more when
        its turn came)."""
        since = self._clock()
        if self._closed:
            raise Overloaded
        if self._running >= self.workers:
            if self.expected_wait() > self.max_wait:
                self.overloaded += 1
                raise Overloaded
            waiting = _Waiting(asyncio.get_running_loop().create_future(), wanted, since)
            self._waiting.append(waiting)
            try:
                await waiting.turn  # the slot is handed over with the turn
            except asyncio.CancelledError:
                if waiting.turn.done() and not waiting.turn.cancelled():
                    self._release()  # it was ours already: pass it on
                else:
                    self._waiting.remove(waiting)
                raise
        else:
            self._running += 1
            self.most_running = max(self.most_running, self._running)
            self._idle.clear()
        waited = self._clock() - since
        try:
            started = self._clock()
            matches = await asyncio.to_thread(bcrypt.checkpw, password, hashed)
            self.cost = 0.8 * self.cost + 0.2 * (self._clock() - started)
        finally:
            self._release()
        return Checked(matches, waited)

    def refuse_waiting(self) -> None:
        """Shutting down: every check still waiting, and every one asked for from now
        on, is refused (its device is told "server busy"), so no handler keeps the
        process waiting for bcrypt."""
        self._closed = True
        while self._waiting:
            waiting = self._waiting.popleft()
            if not waiting.turn.done():
                self.overloaded += 1
                waiting.turn.set_exception(Overloaded())

    async def idle(self) -> None:
        """Wait until no check runs (after ``refuse_waiting``: the last ones finish)."""
        await self._idle.wait()

    def _release(self) -> None:
        """Hand the slot to the next waiting check that is still wanted."""
        while self._waiting:
            waiting = self._waiting.popleft() if self.order == "fifo" else self._waiting.pop()
            if waiting.turn.done():
                continue  # cancelled meanwhile
            if not waiting.wanted():
                self.abandoned += 1
                waiting.turn.set_exception(Abandoned())
                continue
            waiting.turn.set_result(None)
            return
        self._running -= 1
        if self._running == 0:
            self._idle.set()
