"""Checking a login frame against the store, at a cost that leaks nothing.

bcrypt runs in worker threads, at most ``concurrency`` at once, so a reconnect
storm queues instead of starving the event loop. An unknown device is checked
against a dummy hash of the same cost, so the answer takes as long whether the
id exists or not; only the message (which PROTOCOL.md asks for) tells them apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import bcrypt

from edgefleet.agent import protocol
from edgefleet.controller.store import Store
from edgefleet.southbound.tokens import TokenSigner

MAX_PASSWORD_BYTES = 72
"""bcrypt's limit; the REST API refuses longer passwords."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of a login check: ``device_id`` is set when the device exists,
    ``refusal`` when the login is refused, ``credential_version`` on success."""

    device_id: int | None
    refusal: str | None = None
    credential_version: int = 0
    by_token: bool = False
    labels: tuple[str, str, str] = ("", "", "")  # name, namespace, type
    resource: str | None = None  # the Device resource's name (Kubernetes mode)


class CredentialChecker:
    def __init__(
        self, store: Store, tokens: TokenSigner, concurrency: int, bcrypt_rounds: int
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy = bcrypt.hashpw(b"no such device", bcrypt.gensalt(bcrypt_rounds))
        self._by_id = BatchLoader(store.sessions.credentials_of)

    async def check(self, login: protocol.Login) -> Verdict:
        """Raises ``DatabaseUnavailable`` when the answer cannot be known."""
        if login.device_id is None:
            assert login.device_sn is not None and login.device_model is not None
            row = await self._store.sessions.credentials_by_hardware(
                login.device_sn, login.device_model
            )
        elif (device_id := parse_device_id(login.device_id)) is None:
            row = None  # not a snowflake written the one way ids are written: cannot exist
        else:
            row = await self._by_id.load(device_id)
        if login.password is None:
            return self._check_token(login, row)
        hashed = row["secret"].encode() if row else self._dummy
        matches = await self._bcrypt(login.password.encode(), hashed)
        if row is None:
            return Verdict(None, protocol.MSG_UNKNOWN_DEVICE)
        if not matches:
            return Verdict(row["device_id"], protocol.MSG_WRONG_PASSWORD)
        if row["disabled"]:
            return Verdict(row["device_id"], protocol.MSG_DISABLED)
        return _accepted(row, by_token=False)

    def _check_token(self, login: protocol.Login, row: dict | None) -> Verdict:
        """No bcrypt: a token is checked with one HMAC, which is the point of it."""
        assert login.token is not None
        if row is None:
            return Verdict(None, protocol.MSG_UNKNOWN_DEVICE)
        if not self._tokens.valid(
            login.token, row["device_id"], row["credential_version"], time.time()
        ):
            return Verdict(row["device_id"], protocol.MSG_BAD_TOKEN)
        if row["disabled"]:
            return Verdict(row["device_id"], protocol.MSG_DISABLED)
        return _accepted(row, by_token=True)

    async def _bcrypt(self, password: bytes, hashed: bytes) -> bool:
        """Whether ``password`` matches; one bcrypt's cost either way. No stored
        password is over bcrypt's 72 bytes (the API refuses them), so a longer one
        is checked against the dummy hash, to cost the same, and does not match."""
        too_long = len(password) > MAX_PASSWORD_BYTES
        async with self._slots:
            if too_long:
                await asyncio.to_thread(bcrypt.checkpw, b"no such device", self._dummy)
                return False
            return await asyncio.to_thread(bcrypt.checkpw, password, hashed)


def _accepted(row: dict, by_token: bool) -> Verdict:
    return Verdict(
        row["device_id"],
        credential_version=row["credential_version"],
        by_token=by_token,
        labels=(row["name"], row["k8s_namespace"] or "", row["type"]),
        resource=row["k8s_name"],
    )


class BatchLoader:
    """Coalesces concurrent lookups by id into one query.

    Logins arrive together (a restarted pod's devices all reconnect at once);
    while one query runs, the ids asked for meanwhile wait and go in the next,
    so a storm of 10,000 logins costs a few dozen queries and holds one database
    connection instead of queueing for the whole pool.
    """

    def __init__(self, fetch: Callable[[list[int]], Awaitable[dict[int, dict]]]) -> None:
        self._fetch = fetch
        self._waiting: dict[int, list[asyncio.Future[dict | None]]] = {}
        self._running: asyncio.Task[None] | None = None

    async def load(self, key: int) -> dict | None:
        future: asyncio.Future[dict | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._running is None:
            self._running = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    found = await self._fetch(list(batch))
                except Exception as exc:
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for key, futures in batch.items():
                    for future in futures:
                        if not future.done():
                            future.set_result(found.get(key))
        finally:
            self._running = None


def parse_device_id(text: str) -> int | None:
    """The id a login frame names, or None: only the canonical decimal form of a
    positive 63-bit id (no sign, no leading zeros, no other digits than ASCII)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or text.startswith("0"):
        return None
    device_id = int(text)
    return device_id if device_id < 2**63 else None
