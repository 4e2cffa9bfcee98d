"""Deciding a login frame: rate limits, the credential check, and what a
successful login is told.

The gate answers with an ``Admission``: who the device is and the extension keys
of its login answer (session token, intervals), or why it is refused, with the
message PROTOCOL.md gives the device, a short label for metrics and logs, and
the close code (1008, or 1013 "try again later" when the database is away — not
the device's fault).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgefleet.agent import protocol
from edgefleet.controller.store import DatabaseUnavailable, Store
from edgefleet.southbound.credentials import CredentialChecker, Verdict
from edgefleet.southbound.events import DeviceIdentity
from edgefleet.southbound.password_checks import Abandoned, Overloaded
from edgefleet.southbound.session import CLOSE_POLICY, CLOSE_TRY_AGAIN_LATER, Timings
from edgefleet.southbound.throttle import LoginThrottle
from edgefleet.southbound.tokens import TokenSigner

if TYPE_CHECKING:
    # Only the type: the settings object is defined once, with the CLI that fills it.
    from edgefleet.controller.settings import SouthboundSettings

# Login failure messages -> the label of ``edgefleet_logins_total{result}`` and logs.
LOGIN_RESULTS = {
    protocol.MSG_NOT_JSON: "invalid_frame",
    protocol.MSG_NO_SECRET: "invalid_frame",
    protocol.MSG_NO_IDENTITY: "invalid_frame",
    protocol.MSG_UNKNOWN_DEVICE: "unknown_device",
    protocol.MSG_WRONG_PASSWORD: "wrong_password",
    protocol.MSG_BAD_TOKEN: "bad_token",
    protocol.MSG_LOGIN_TIMEOUT: "timeout",
    protocol.MSG_DISABLED: "disabled",
    protocol.MSG_TOO_MANY_LOGINS: "rate_limited",
    protocol.MSG_UNAVAILABLE: "unavailable",
}


def login_result(message: str) -> str:
    return LOGIN_RESULTS.get(message, "refused")


@dataclass(frozen=True)
class Admission:
    device: DeviceIdentity | None = None
    """Set when the login is accepted."""
    by_token: bool = False
    answer: dict[str, Any] = field(default_factory=dict)
    """The extension keys of the login answer."""
    refusal: str | None = None
    """The message the device is told when the login is refused."""
    device_id: int | None = None
    """The device the refused frame named, when it exists."""
    code: int = CLOSE_POLICY
    reason: str | None = None
    """The label of a refusal that is not the device's fault: ``overloaded`` (no turn
    for its password check in time) or ``abandoned`` (it left while it waited)."""
    waited: float | None = None
    """Seconds the password check waited for its turn (None: no bcrypt was needed)."""
    verified: str | None = field(default=None, repr=False)
    """The verified-credential digest to remember (a password that passed bcrypt)."""
    timings: Timings | None = None
    """The session's own timings (a device on a metered link), else the server's."""


class LoginGate:
    def __init__(self, store: Store, settings: SouthboundSettings, bcrypt_rounds: int) -> None:
        self._settings = settings
        key = settings.token_key.encode() if settings.token_key else secrets.token_bytes(32)
        self.tokens = TokenSigner(key, settings.token_ttl)
        pepper = settings.password_pepper
        self.credentials = CredentialChecker(
            store,
            self.tokens,
            pepper.encode() if pepper else secrets.token_bytes(32),
            bcrypt_rounds,
            workers=settings.login_concurrency,
            max_wait=settings.login_max_wait,
            order=settings.login_queue_order,
        )
        self.throttle = LoginThrottle(
            settings.login_attempts_per_device, settings.login_failures_per_address
        )
        # A device on a metered link beats less often: its tolerances scale with it.
        stretch = settings.metered_heartbeat_interval / settings.heartbeat_interval
        self.metered = Timings(
            login_timeout=settings.login_timeout,
            tolerance=settings.heartbeat_tolerance * stretch,
            tolerance_after_failure=settings.heartbeat_tolerance_after_failure * stretch,
            max_failures=settings.heartbeat_failures,
            max_frames_per_second=settings.max_frames_per_second,
        )

    async def admit(
        self, login: protocol.Login, host: str, now: float, wanted: Callable[[], bool]
    ) -> Admission:
        """``now`` is the loop's clock (the throttle's time base); ``wanted()`` says
        whether the connection still waits for the answer.

        The attempt limit is keyed on the identity as parsed, not as sent: ``"007"``
        and ``"7"`` would otherwise be two devices with an allowance each."""
        if not self.throttle.allow(host, _identity_key(login), now):
            return Admission(refusal=protocol.MSG_TOO_MANY_LOGINS)
        try:
            verdict = await self.credentials.check(login, wanted)
        except DatabaseUnavailable:
            return Admission(refusal=protocol.MSG_UNAVAILABLE, code=CLOSE_TRY_AGAIN_LATER)
        except Overloaded:
            return Admission(
                refusal=protocol.MSG_UNAVAILABLE, code=CLOSE_TRY_AGAIN_LATER, reason="overloaded"
            )
        except Abandoned:
            return Admission(refusal=protocol.MSG_UNAVAILABLE, reason="abandoned")
        if verdict.refusal is not None:
            self.throttle.failed(host, now)
            return Admission(
                refusal=verdict.refusal, device_id=verdict.device_id, waited=verdict.waited
            )
        metered = "metered" in login.extensions
        return Admission(
            device=_identity(verdict),
            by_token=verdict.by_token,
            answer=self._answer(verdict, metered),
            timings=self.metered if metered else None,
            waited=verdict.waited,
            verified=verdict.verified,
        )

    def malformed(self, host: str, now: float) -> None:
        """A login refused before it reached the gate (not JSON, no secret, no
        frame in time): a failure of its address like any other."""
        self.throttle.failed(host, now)

    def _answer(self, verdict: Verdict, metered: bool) -> dict[str, Any]:
        assert verdict.device_id is not None
        token, expires = self.tokens.issue(
            verdict.device_id, verdict.credential_version, time.time()
        )
        s = self._settings
        answer = {
            "token": token,
            "token_expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
            "heartbeat_interval": s.heartbeat_interval,
            "status_interval": s.status_interval,
        }
        if metered:
            answer["heartbeat_interval"] = s.metered_heartbeat_interval
            answer["status_interval"] = s.metered_status_interval
            answer["status_change_percent"] = s.metered_status_change
        return answer


def _identity_key(login: protocol.Login) -> str:
    if login.device_id is None:
        return f"hardware:{login.device_sn}\0{login.device_model}"
    text = login.device_id
    if text.isascii() and text.isdigit() and len(text) <= 40:
        return f"id:{int(text)}"  # "007" is charged to device 7 (and refused as not canonical)
    return "id:malformed"


def _identity(verdict: Verdict) -> DeviceIdentity:
    assert verdict.device_id is not None
    name, namespace, type_ = verdict.labels
    return DeviceIdentity(
        device_id=verdict.device_id,
        name=name,
        namespace=namespace,
        type=type_,
        resource=verdict.resource,
        credential_version=verdict.credential_version,
    )
