"""From a bearer string to a ``Principal``: access token, API key or bootstrap token.

A JWT's signature is checked the first time it is seen, after that only its expiry;
finding the user's roles costs a database round trip, so principals are cached for
``principal_cache_ttl`` seconds. Every change
to users, roles, bindings or keys made through this process empties the cache
(``forget``), so revoking a key or demoting a user takes effect at the next
request; another controller process sees it within the cache's lifetime. When a
user's entry expires under load, one lookup refreshes it and the requests that
arrive meanwhile wait for that one, instead of each asking the database.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from datetime import datetime

from edgefleet.controller.access.principal import BOOTSTRAP, Principal
from edgefleet.controller.access.tokens import (
    KEY_PREFIX,
    AccessClaims,
    InvalidToken,
    JwtKeys,
    api_key_prefix,
    digest,
    same_digest,
)
from edgefleet.controller.store import Store, StoreError
from edgefleet.controller.store.database import utcnow

log = logging.getLogger("edgefleet.access")

KEY_USE_WRITE_INTERVAL = 60.0
"""``last_used_at`` of a key is written at most this often: not on every request."""

VERIFIED_TOKENS = 10_000
"""Access tokens remembered as verified; when there are more, the memory starts over."""


class Authenticator:
    def __init__(
        self,
        store: Store,
        keys: JwtKeys,
        bootstrap_token: str,
        cache_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.keys = keys
        self._bootstrap = bootstrap_token.encode()
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._users: dict[int, tuple[Principal, float]] = {}
        self._loading: dict[int, asyncio.Future[Principal]] = {}
        self._generation = 0
        self._keys: dict[str, tuple[Principal, datetime | None, float]] = {}
        self._key_used: dict[int, float] = {}
        self._verified: dict[str, AccessClaims] = {}

    def forget(self) -> None:
        """Drop every cached principal: roles, bindings, users or keys changed."""
        self._users.clear()
        self._keys.clear()
        self._loading.clear()
        self._generation += 1

    async def principal(self, bearer: str) -> Principal:
        """Raises ``InvalidToken`` for anything that does not authenticate."""
        if bearer.startswith(KEY_PREFIX):
            return await self._api_key(bearer)
        if bearer.count(".") == 2:
            return await self._user(self._claims(bearer).user_id)
        if self._bootstrap and hmac.compare_digest(bearer.encode(), self._bootstrap):
            return BOOTSTRAP
        raise InvalidToken("missing or wrong bearer token")

    def _claims(self, token: str) -> AccessClaims:
        """The access token's claims, its signature checked once: a token cannot
        change, only run out, so one seen before costs a lookup and an expiry check
        instead of PyJWT's decoding and HMAC (57 µs of every signed-in request).
        Nothing here depends on the user, whose changes ``forget`` handles."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self.keys.verify(token)
            if len(self._verified) >= VERIFIED_TOKENS:
                self._verified.clear()
            self._verified[token] = claims
        elif claims.expires_at <= time.time():
            raise InvalidToken("access token expired")
        return claims

    async def user(self, user_id: int) -> Principal:
        """The principal of a user (active), fresh from the database."""
        found = await self._store.users.principals([user_id])
        if user_id not in found or not found[user_id][0]["is_active"]:
            raise InvalidToken("the account is disabled or gone")
        row, held = found[user_id]
        return Principal(
            "user", user_id, row["username"], user_id, row["is_superuser"], tuple(held)
        )

    async def _user(self, user_id: int) -> Principal:
        now = self._clock()
        cached = self._users.get(user_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        loading = self._loading.get(user_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(user_id, now))
            # Its error is read here too, in case every caller went away before it ended.
            loading.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._loading[user_id] = loading
        # Shielded: a caller that goes away must not cancel the others' lookup.
        return await asyncio.shield(loading)

    async def _load(self, user_id: int, now: float) -> Principal:
        generation = self._generation
        try:
            principal = await self.user(user_id)
        finally:
            if self._generation == generation:
                self._loading.pop(user_id, None)
        if self._generation == generation:  # not forgotten while it was read
            self._users[user_id] = (principal, now + self._cache_ttl)
        return principal

    async def _api_key(self, key: str) -> Principal:
        now = self._clock()
        cache_key = digest(key)
        cached = self._keys.get(cache_key)
        if cached is not None and cached[2] > now:
            principal, expires_at = cached[0], cached[1]
        else:
            found = await self._store.api_keys.by_prefix(api_key_prefix(key))
            if found is None or not same_digest(key, found[0]["digest"]):
                raise InvalidToken("unknown API key")
            row, owner, held = found
            if row["revoked_at"] is not None:
                raise InvalidToken("API key revoked")
            # The key never does more than its owner may do now; a disabled owner
            # (or a deleted one, whose keys went with it) stops it.
            owner_may = (await self.user(owner["user_id"])).permissions
            principal = Principal(
                "api_key", row["key_id"], row["prefix"], owner["user_id"], False, tuple(held),
                limit=owner_may,
            )  # fmt: skip
            expires_at = row["expires_at"]
            self._keys[cache_key] = (principal, expires_at, now + self._cache_ttl)
        if expires_at is not None and expires_at <= utcnow():
            raise InvalidToken("API key expired")
        await self._note_use(principal, now)
        return principal

    async def _note_use(self, principal: Principal, now: float) -> None:
        assert principal.id is not None
        if now - self._key_used.get(principal.id, float("-inf")) < KEY_USE_WRITE_INTERVAL:
            return
        self._key_used[principal.id] = now
        try:
            await self._store.api_keys.used(principal.id, utcnow())
        except StoreError as exc:  # a missed timestamp must not refuse the request
            log.warning("could not record an API key's use", extra={"error": str(exc)})
