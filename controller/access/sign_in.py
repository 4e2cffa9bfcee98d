"""Signing in and out: passwords to tokens, refresh-token rotation, registration.

A sign-in checks a bcrypt hash in a worker thread. A user name that does not exist
is checked against a dummy hash of the same cost, so the answer takes as long
either way and does not tell which names exist. Failed sign-ins are limited per
user name and per source address (fixed one-minute windows, in this process):
past the limit, sign-ins are refused before any hash is computed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from edgefleet.controller.access.authenticator import Authenticator
from edgefleet.controller.access.principal import Caller, Principal
from edgefleet.controller.access.tokens import InvalidToken, digest, new_family, new_refresh_token
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.passwords import hash_password, password_matches
from edgefleet.controller.settings import AuthSettings
from edgefleet.controller.store import Binding, Store
from edgefleet.controller.store.database import utcnow
from edgefleet.controller.writes import Auditor

WINDOW = 60.0


class SignInThrottled(Exception):
    """Too many failed sign-ins for this user name or from this address."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed sign-ins; try again in {math.ceil(retry_after)} s")
        self.retry_after = retry_after


class RegistrationClosed(Exception):
    """Self-registration is off (``--allow-registration``)."""


class FailureWindows:
    """Failures per key in fixed windows of ``WINDOW`` seconds."""

    def __init__(self, limit: float, clock: Callable[[], float], max_keys: int = 100_000) -> None:
        self._limit = limit
        self._clock = clock
        self._max_keys = max_keys
        self._windows: dict[str, tuple[float, int]] = {}

    def _current(self, key: str) -> tuple[float, int]:
        start, count = self._windows.get(key, (0.0, 0))
        now = self._clock()
        return (start, count) if now - start < WINDOW else (now, 0)

    def blocked_for(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: it may now)."""
        start, count = self._current(key)
        return max(0.0, start + WINDOW - self._clock()) if count >= self._limit else 0.0

    def failed(self, key: str) -> None:
        if len(self._windows) >= self._max_keys:
            now = self._clock()
            self._windows = {k: w for k, w in self._windows.items() if now - w[0] < WINDOW}
        start, count = self._current(key)
        self._windows[key] = (start, count + 1)

    def forget(self, key: str) -> None:
        self._windows.pop(key, None)


@dataclass(frozen=True)
class Session:
    """What a sign-in or a refresh answers."""

    access_token: str
    expires_in: float
    refresh_token: str
    refresh_expires_in: float
    user: dict[str, Any]


class SignIn:
    def __init__(
        self,
        store: Store,
        authenticator: Authenticator,
        auditor: Auditor,
        ids: SnowflakeGenerator,
        settings: AuthSettings,
        bcrypt_rounds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._authenticator = authenticator
        self._audit = auditor
        self._ids = ids
        self.settings = settings
        self._rounds = bcrypt_rounds
        self._per_user = FailureWindows(settings.failures_per_user, clock)
        self._per_address = FailureWindows(settings.failures_per_address, clock)
        self._dummy_hash: str | None = None

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await hash_password("not anyone's password", self._rounds)
        return self._dummy_hash

    async def login(self, caller: Caller, username: str, password: str) -> Session:
        """Raises ``InvalidToken`` (wrong name or password, account disabled) or
        ``SignInThrottled``."""
        user_key = username.lower()
        account = None
        try:
            wait = max(
                self._per_user.blocked_for(user_key), self._per_address.blocked_for(caller.source)
            )
            if wait:
                raise SignInThrottled(wait)
            account = await self._store.users.sign_in_view(username)
            stored = account["password"] if account else None
            matches = await password_matches(password, stored or await self._dummy())
            if not (matches and stored and account and account["is_active"]):
                self._per_user.failed(user_key)
                self._per_address.failed(caller.source)
                raise InvalidToken("wrong user name or password, or the account is disabled")
        except Exception as exc:
            actor = _actor(caller, account, username)
            failed = actor.entry("login", "user", account and account["user_id"])
            await self._audit.append(failed.failed(*self._audit.describe(exc)))
            raise
        self._per_user.forget(user_key)
        user_id = account["user_id"]
        entry = _actor(caller, account, username).entry("login", "user", user_id)
        session = await self._start(user_id, entry)
        await self._store.users.signed_in(user_id)
        return session

    async def _start(self, user_id: int, entry: Any) -> Session:
        """A new access token and a refresh token of a new family."""
        refresh = new_refresh_token()
        ttl = self.settings.refresh_token_ttl
        await self._store.refresh_tokens.issue(
            user_id, new_family(), digest(refresh), utcnow() + timedelta(seconds=ttl), entry
        )
        return await self._session(user_id, refresh)

    async def _session(self, user_id: int, refresh: str) -> Session:
        user = await self._store.users.get(user_id)
        token, expires_in = self._authenticator.keys.issue(
            user_id, user["username"], self.settings.access_token_ttl
        )
        return Session(token, expires_in, refresh, self.settings.refresh_token_ttl, user)

    async def refresh(self, caller: Caller, presented: str) -> Session:
        """Spend a refresh token for a new pair. A used one presented again revokes
        its whole family."""
        successor = new_refresh_token()
        expires_at = utcnow() + timedelta(seconds=self.settings.refresh_token_ttl)
        rotation = await self._store.refresh_tokens.rotate(digest(presented), digest(successor),
                                                           expires_at)  # fmt: skip
        entry = caller.entry("refresh", "user", rotation.user_id)
        try:
            if rotation.outcome == "reused":
                raise InvalidToken(
                    "refresh token already used: every token of this sign-in is revoked"
                )
            if rotation.outcome != "rotated" or rotation.user_id is None:
                raise InvalidToken("refresh token unknown, expired or revoked")
            await self._authenticator.user(rotation.user_id)  # still active?
            session = await self._session(rotation.user_id, successor)
        except Exception as exc:
            await self._audit.append(entry.failed(*self._audit.describe(exc)))
            raise
        await self._audit.append(entry)
        return session

    async def logout(self, caller: Caller, presented: str | None) -> None:
        """Revoke the refresh token's family; an unknown token changes nothing."""
        user_id = None
        if presented:
            user_id = await self._store.refresh_tokens.revoke(digest(presented))
        await self._audit.append(caller.entry("logout", "user", user_id))

    async def register(
        self, caller: Caller, username: str, password: str, email: str | None
    ) -> dict[str, Any]:
        """A new account with the viewer role everywhere, when registration is on."""
        user_id = self._ids.next_id()
        async with self._audit.change(caller, "register", "user", user_id,
                                      ["username", "password", "email"]) as entry:  # fmt: skip
            if not self.settings.allow_registration:
                raise RegistrationClosed("self-registration is off")
            wait = self._per_address.blocked_for(caller.source)
            if wait:
                raise SignInThrottled(wait)
            self._per_address.failed(caller.source)  # registrations count against the address
            values = {"user_id": user_id, "username": username, "email": email,
                      "password": await hash_password(password, self._rounds)}  # fmt: skip
            return await self._store.users.create(values, [Binding("viewer")], entry)


def _actor(caller: Caller, account: dict[str, Any] | None, username: str) -> Caller:
    """The caller of a sign-in is the account it names (anonymous if none)."""
    if account is None:
        principal = Principal("anonymous", None, username[:128], None, False, ())
    else:
        principal = Principal("user", account["user_id"], account["username"],
                              account["user_id"], False, ())  # fmt: skip
    return Caller(principal, caller.source, caller.request_id, caller.status)
