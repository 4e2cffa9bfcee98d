"""One log line per login outcome and per session end, so that what the devices do
shows in the log without a metrics stack.

A reconnect storm is thousands of logins a second; logging each would make the
log the bottleneck. Past ``lines_per_second`` the lines are sampled: the next line
that gets through says how many were left out since the last one (``skipped``),
so counts can still be added up from the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edgefleet.southbound.events import Left, LoggedIn, LoginFailed, SessionEvents

log = logging.getLogger("edgefleet.southbound.activity")


class ActivityLog:
    def __init__(
        self, lines_per_second: float = 20.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = lines_per_second
        self._clock = clock
        self._allowance = lines_per_second
        self._at = clock()
        self._skipped = 0

    def subscribe(self, events: SessionEvents) -> None:
        events.on(LoggedIn, self._logged_in)
        events.on(LoginFailed, self._login_failed)
        events.on(Left, self._left)

    def _logged_in(self, event: LoggedIn) -> None:
        self._line(
            "device logged in",
            device_id=event.device.device_id,
            peer=event.peer,
            by="token" if event.by_token else "password",
        )

    def _login_failed(self, event: LoginFailed) -> None:
        self._line(
            "device login refused", device_id=event.device_id, peer=event.peer, reason=event.reason
        )

    def _left(self, event: Left) -> None:
        self._line("device session ended", device_id=event.device_id, cause=event.cause)

    def _line(self, message: str, **fields: object) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        now = self._clock()
        self._allowance = min(self._rate, self._allowance + (now - self._at) * self._rate)
        self._at = now
        if self._allowance < 1.0:
            self._skipped += 1
            return
        self._allowance -= 1.0
        if self._skipped:
            fields["skipped"] = self._skipped
            self._skipped = 0
        log.info(message, extra=fields)
