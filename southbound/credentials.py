"""Checking a login frame against the store, at a cost that leaks nothing.

bcrypt runs in worker threads through ``PasswordChecks`` (a bounded number at
once, admitted by the expected wait; see its docstring). An unknown device is
checked against a dummy hash of the same cost, so the answer takes as long whether
the id exists or not; only the message (which PROTOCOL.md asks for) tells them
apart.

Version-1 devices have no session tokens, so a reconnect storm of them would be a
bcrypt storm. The verified-credential cache spares it: after a password passed
bcrypt, a keyed digest of it — HMAC-SHA256 under a pepper that lives in the
settings (the chart's Secret), never in the database, over the device id, its
credential version and the password — is stored on the device's row. The next
login with the same password costs one HMAC, on any replica and after a restart.
Any credential change bumps the version, which no stored digest matches. Only a
right password is answered faster, and the answer says it was right anyway. A
leaked database alone gives nothing: without the pepper the digests cannot be
tested offline any faster than bcrypt (they cannot be tested at all).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import bcrypt

from edgefleet.agent import protocol
from edgefleet.controller.store import Store
from edgefleet.southbound.password_checks import PasswordChecks
from edgefleet.southbound.tokens import TokenSigner

MAX_PASSWORD_BYTES = 72
"""bcrypt's limit; the REST API refuses longer passwords."""


def verified_digest(pepper: bytes, device_id: int, credential_version: int, password: bytes) -> str:
    """The verified-credential digest of a password that passed bcrypt (see above)."""
    message = f"{device_id}.{credential_version}.".encode() + password
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()


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
    waited: float | None = None
    """Seconds the bcrypt check waited for its turn (None: no bcrypt needed)."""
    verified: str | None = None
    """A new verified-credential digest to remember (bcrypt said yes, no cache hit)."""


class CredentialChecker:
    def __init__(
        self,
        store: Store,
        tokens: TokenSigner,
        pepper: bytes,
        bcrypt_rounds: int,
        workers: int,
        max_wait: float,
        order: str,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._pepper = pepper
        started = time.perf_counter()  # the first estimate of a check's cost
        self._dummy = bcrypt.hashpw(b"no such device", bcrypt.gensalt(bcrypt_rounds))
        cost = time.perf_counter() - started
        self.checks = PasswordChecks(workers, max_wait, cost, order)
        self._by_id = BatchLoader(store.sessions.credentials_of)

    async def check(self, login: protocol.Login, wanted: Callable[[], bool]) -> Verdict:
        """``wanted()`` says whether the connection still waits for the answer.
        Raises ``DatabaseUnavailable`` when the answer cannot be known, and the
        ``PasswordChecks`` refusals (``Overloaded``, ``Abandoned``)."""
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
        password = login.password.encode()
        if row is not None and self._remembered(row, password):
            if row["disabled"]:
                return Verdict(row["device_id"], protocol.MSG_DISABLED)
            return _accepted(row, by_token=False)
        # Over bcrypt's 72 bytes no stored password can match: the dummy hash is
        # checked instead, so the refusal costs what any other does.
        fits = len(password) <= MAX_PASSWORD_BYTES
        hashed = row["secret"].encode() if row is not None and fits else self._dummy
        checked = await self.checks.check(password if fits else b"", hashed, wanted)
        if row is None:
            return Verdict(None, protocol.MSG_UNKNOWN_DEVICE, waited=checked.waited)
        if not (fits and checked.matches):
            return Verdict(row["device_id"], protocol.MSG_WRONG_PASSWORD, waited=checked.waited)
        if row["disabled"]:
            return Verdict(row["device_id"], protocol.MSG_DISABLED, waited=checked.waited)
        accepted = _accepted(row, by_token=False)
        return replace(accepted, waited=checked.waited, verified=self._digest(row, password))

    def _remembered(self, row: dict, password: bytes) -> bool:
        stored = row["verified_digest"]
        return stored is not None and hmac.compare_digest(self._digest(row, password), stored)

    def _digest(self, row: dict, password: bytes) -> str:
        return verified_digest(self._pepper, row["device_id"], row["credential_version"], password)

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
