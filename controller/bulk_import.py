"""Registering many devices from one file: every row registered, or refused with why.

The REST layer parses the file into rows (``ImportRow``: the columns of a device, or
the reason the row is unreadable); this service registers them in batches: the
caller's permission once, then per batch the passwords, the resource mirror
(Kubernetes mode: a Secret and a Device per row, as for one registration), and one
database transaction with the devices, their labels, their ``registered`` events
and one audit entry per device. A row that fails — bad values, hardware already
registered or repeated in the file, a resource the API server refused — is one
more result; it never stops the rows after it.

Passwords: a row may carry one; the others get a generated one, returned once in
the answer. A generated password is 192 random bits: bcrypt's work factor exists
to slow down guessing a password a person chose, and nobody guesses 192 random
bits at any cost, so generated passwords are hashed at bcrypt's lowest cost. That
is what lets 10,000 rows register in well under a minute rather than the better
part of an hour at cost 12. Passwords given in the file are hashed at the configured cost.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import bcrypt

from edgefleet.controller.access.principal import Caller
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.membership_changes import MembershipChanges
from edgefleet.controller.mirror import ResourceMirror
from edgefleet.controller.passwords import generate_password
from edgefleet.controller.store import Store, StoreError
from edgefleet.controller.writes import Auditor

BATCH = 500
"""Rows per transaction: large enough that a 10,000-row file is 20 round trips of
inserts, small enough that a batch never holds locks for long."""
GENERATED_PASSWORD_ROUNDS = 4
HASH_CHUNK = 64
"""Passwords hashed per worker thread: bcrypt lets go of the GIL, so a batch's
hashes spread over the cores (at cost 4 one takes about 3 ms of a core)."""
PERMISSION = "devices:write"


@dataclass(frozen=True)
class ImportRow:
    row: int
    """1-based, counting the file's records (not its header or blank lines)."""
    values: dict[str, Any] | None
    """The device's columns (with ``password`` if the row gives one); None: unreadable."""
    problem: str | None = None
    """Why the row is unreadable."""


@dataclass(frozen=True)
class ImportOutcome:
    row: int
    device_id: int | None = None
    password: str | None = None
    message: str | None = None
    """Why the row was not registered; None when it was."""


def _hash_all(passwords: list[tuple[str, int]]) -> list[str]:
    """bcrypt hashes, computed together in one worker thread: one thread hop per
    chunk instead of one per row."""
    return [bcrypt.hashpw(p.encode(), bcrypt.gensalt(r)).decode() for p, r in passwords]


class DeviceImport:
    def __init__(
        self,
        store: Store,
        mirror: ResourceMirror,
        ids: SnowflakeGenerator,
        bcrypt_rounds: int,
        auditor: Auditor,
        memberships: MembershipChanges,
    ) -> None:
        self._memberships = memberships
        self._store = store
        self._mirror = mirror
        self._ids = ids
        self._bcrypt_rounds = bcrypt_rounds
        self._audit = auditor

    async def run(self, caller: Caller, rows: list[ImportRow]) -> list[ImportOutcome]:
        """One outcome per row, in row order. Registering needs ``devices:write``
        everywhere, as one registration does (a new device is in no group yet)."""
        async with self._audit.change(caller, "import_devices", "device"):
            caller.principal.everywhere(PERMISSION)
        outcomes: list[ImportOutcome] = []
        seen: dict[tuple[str, str], int] = {}
        for start in range(0, len(rows), BATCH):
            batch: list[tuple[int, dict[str, Any]]] = []
            for row in rows[start : start + BATCH]:
                if row.values is None:
                    outcomes.append(ImportOutcome(row.row, message=row.problem))
                    continue
                hardware = (row.values["hardware_sn"], row.values["hardware_model"])
                if hardware in seen:
                    message = f"the same hardware_sn and hardware_model as row {seen[hardware]}"
                    outcomes.append(ImportOutcome(row.row, message=message))
                    continue
                seen[hardware] = row.row
                batch.append((row.row, row.values))
            outcomes += await self._register(caller, batch)
        return sorted(outcomes, key=lambda outcome: outcome.row)

    async def _register(
        self, caller: Caller, rows: list[tuple[int, dict[str, Any]]]
    ) -> list[ImportOutcome]:
        """One batch: (row number, columns) each, every row readable and distinct."""
        if not rows:
            return []
        given = [values.get("password") for _, values in rows]
        passwords = [password or generate_password() for password in given]
        rounds = [self._bcrypt_rounds if g else GENERATED_PASSWORD_ROUNDS for g in given]
        pairs = list(zip(passwords, rounds, strict=True))
        parts = await asyncio.gather(
            *(asyncio.to_thread(_hash_all, pairs[i : i + HASH_CHUNK])
              for i in range(0, len(pairs), HASH_CHUNK))
        )  # fmt: skip
        hashes = [hashed for part in parts for hashed in part]
        outcomes: list[ImportOutcome] = []
        devices, audits, kept = [], [], []
        for (number, values), password, hashed in zip(rows, passwords, hashes, strict=True):
            columns = {k: v for k, v in values.items() if k != "password"}
            device = {**columns, "device_id": self._ids.next_id(), "secret": hashed}
            try:
                device |= await self._mirror.device_created(device, password)
            except StoreError as exc:
                outcomes.append(ImportOutcome(number, message=str(exc)))
                continue
            devices.append(device)
            audits.append(caller.entry("import_devices", "device", device["device_id"], values))
            kept.append((number, password))
        # Labels may put the new devices in dynamic groups at once.
        memberships = await self._memberships.of_devices(d["device_id"] for d in devices)
        refused = await self._store.devices.create_many(devices, audits)
        await self._memberships.settle(memberships)
        for i, (number, password) in enumerate(kept):
            if i in refused:
                outcomes.append(ImportOutcome(number, message=refused[i]))
            else:
                outcomes.append(ImportOutcome(number, devices[i]["device_id"], password))
        return outcomes
