"""One budget of Device status writes for the whole installation, shared.

Theory of operation
-------------------
The Kubernetes API server takes every Device status write edgefleet makes: the
status writer of every southbound replica, and the controller's resync. A cap per
process multiplies with the replicas (ten replicas at 20 a second would be 200),
so the cap is one number for the installation, ``--kube-status-budget``, and each
process that writes statuses takes an equal share of it::

    share = budget / participants

``participants`` is counted at every beat (``--instance-beat-interval``) from the
table the southbound instances beat in already, ``southbound_instances``: the rows
seen within ``--instance-timeout``. Every southbound replica has a row
(``southbound.liveness``); the controller's resync adds a row of its own while it
has statuses to put right, and removes it when done (``controller.kube.resync``).
Nothing else is coordinated: each process spaces its own writes at least
``1 / share`` apart (``StatusBudget.delay``). No new infrastructure, no messages
between the processes.

Failure modes
-------------
- A process joins: the others count it at their next beat. For at most that beat
  the installation may write the newcomer's share more than the budget. The
  resync, never urgent, waits one beat before its first write so that it never
  adds to the budget; a new southbound replica writes at once, because its
  devices' states are what people watch in ``kubectl get devices``.
- A process stops cleanly: it deletes its row, and the others' shares grow at
  their next beat.
- A process dies: its row stays until the instance timeout. The others keep their
  smaller shares (under the budget, never over) until the first beat after that,
  which releases its sessions and counts again.
- A process cannot count (the database is away, or no beat has counted for a whole
  instance timeout): it takes half the share of the last count it read
  (``FALLBACK_DIVISOR``) — never the whole budget, and within the budget even if
  half of the processes it counted were to start while it cannot see them. (In
  practice none can: a southbound cannot start without the database.)
- Clocks: a row's age is judged by the reader's clock, as for the lost-instance
  release; pods' clocks are kept in step by NTP.

Only the standard library is imported: the southbound imports this module.
"""

from __future__ import annotations

import math

FALLBACK_DIVISOR = 2.0
"""A process that cannot count the participants takes its last share divided by this."""
MARGIN = 1e-6
"""Seconds added to each gap between writes, so that rounding never fits one write
more into a second than the share allows."""


class StatusBudget:
    """One process's share of the installation's budget, and the pace of its writes:
    at least ``1 / share`` seconds apart, so never more than ``share`` (rounded up)
    in any one second.

    Sans-I/O: the caller passes the time (``time.monotonic()``) and sleeps
    ``delay(now)`` before each write, then reports it with ``spent(now)``.
    """

    def __init__(self, budget: float, stale_after: float = math.inf) -> None:
        """``budget``: writes a second for the installation; ``stale_after``:
        seconds after which a count no longer holds (the instance timeout)."""
        if budget <= 0:
            raise ValueError("the status-write budget must be positive")
        self.budget = budget
        self.stale_after = stale_after
        self._participants = 1
        self._counted_at: float | None = None
        self._last_write = -math.inf

    def counted(self, participants: int, now: float) -> None:
        """A beat counted ``participants`` processes sharing the budget (this one
        among them)."""
        self._participants = max(1, participants)
        self._counted_at = now

    def count_failed(self) -> None:
        """A beat could not count: fall back to the safe share until one can."""
        self._counted_at = None

    def share(self, now: float) -> float:
        """Writes a second this process may make now."""
        fair = self.budget / self._participants
        if self._counted_at is None or now - self._counted_at > self.stale_after:
            return fair / FALLBACK_DIVISOR
        return fair

    @property
    def participants(self) -> int:
        """The processes sharing the budget at the last count."""
        return self._participants

    def delay(self, now: float) -> float:
        """Seconds to wait before the next write may go (0: now)."""
        return max(0.0, self._last_write + 1.0 / self.share(now) + MARGIN - now)

    def spent(self, now: float) -> None:
        """A write went out at ``now``."""
        self._last_write = now
