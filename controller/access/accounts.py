"""Every change to users, roles, bindings and API keys, audited like fleet changes.

Only ``users:admin`` manages other people. Anyone signed in manages their own
email, password and API keys; a key they make can hold no more than they do
(checked here, at creation) and never does more than they may at the time it is
used (``Principal.limit``). Each change empties the authenticator's cache, so
revocations and demotions take effect at the next request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from edgefleet.controller.access.authenticator import Authenticator
from edgefleet.controller.access.principal import BOOTSTRAP, AccessDenied, Caller, Principal
from edgefleet.controller.access.tokens import new_api_key
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.passwords import hash_password, password_matches
from edgefleet.controller.store import (
    ApiKeyNotFound,
    Binding,
    RoleNotFound,
    Store,
    StoreError,
)
from edgefleet.controller.writes import Auditor

log = logging.getLogger("edgefleet.access")

ADMIN = "users:admin"
SETUP = Caller(BOOTSTRAP, "local", "setup", 201)
"""The actor of what start-up and the command line do."""


class WrongPassword(Exception):
    """The old password given with a new one is not the account's."""


class AccountWrites:
    def __init__(
        self,
        store: Store,
        authenticator: Authenticator,
        auditor: Auditor,
        ids: SnowflakeGenerator,
        bcrypt_rounds: int,
    ) -> None:
        self._store = store
        self._authenticator = authenticator
        self._audit = auditor
        self._ids = ids
        self._rounds = bcrypt_rounds

    async def _hashed(self, password: str | None) -> str | None:
        return None if password is None else await hash_password(password, self._rounds)

    # --- start-up ----------------------------------------------------------------------------

    async def prepare(self, admin_username: str, admin_password: str | None) -> bool:
        """Put the built-in roles in and, on a fresh installation given a password,
        create the first administrator. False when the database is unreachable."""
        try:
            await self._store.roles.ensure_builtin()
            if admin_password and not await self._store.users.count():
                await self.create_admin(SETUP, admin_username, admin_password)
                log.info("first administrator created", extra={"username": admin_username})
        except StoreError as exc:
            log.warning("access set-up waits for the database", extra={"error": str(exc)})
            return False
        return True

    async def prepare_when_possible(self, admin_username: str, admin_password: str | None) -> None:
        while True:
            if await self.prepare(admin_username, admin_password):
                return
            await asyncio.sleep(2.0)

    async def create_admin(self, caller: Caller, username: str, password: str) -> dict[str, Any]:
        """A superuser holding the admin role everywhere."""
        await self._store.roles.ensure_builtin()
        values = {"username": username, "is_superuser": True}
        return await self.create_user(caller, values, password, [Binding("admin")])

    # --- users -------------------------------------------------------------------------------

    async def create_user(
        self, caller: Caller, values: dict[str, Any], password: str | None, bindings: list[Binding]
    ) -> dict[str, Any]:
        """A user; without a password, a service account (API keys only)."""
        user_id = self._ids.next_id()
        fields = [*values, "roles", *(["password"] if password else [])]
        async with self._audit.change(caller, "create_user", "user", user_id, fields) as entry:
            caller.principal.scope(ADMIN)
            values = {**values, "user_id": user_id, "password": await self._hashed(password)}
            user = await self._store.users.create(values, bindings, entry)
        self._authenticator.forget()
        return user

    async def update_user(
        self, caller: Caller, user_id: int, changes: dict[str, Any], password: str | None
    ) -> dict[str, Any]:
        fields = [*changes, *(["password"] if password is not None else [])]
        async with self._audit.change(caller, "update_user", "user", user_id, fields) as entry:
            caller.principal.scope(ADMIN)
            if password is not None:
                changes = {**changes, "password": await self._hashed(password)}
            user = await self._store.users.update(user_id, changes, audit=entry)
        self._authenticator.forget()
        return user

    async def update_self(
        self, caller: Caller, email: str | None, password: str | None, old_password: str | None,
        fields: Iterable[str],
    ) -> dict[str, Any]:  # fmt: skip
        """A user's own email or password; a new password needs the old one."""
        principal = caller.principal
        async with self._audit.change(caller, "update_me", "user", principal.user_id,
                                      fields) as entry:  # fmt: skip
            if principal.kind != "user" or principal.user_id is None:
                raise AccessDenied("a signed-in user (not a key or the bootstrap token)")
            changes: dict[str, Any] = {}
            if "email" in fields:
                changes["email"] = email
            if password is not None:
                stored = await self._store.users.password_of(principal.user_id)
                if not (old_password and stored and await password_matches(old_password, stored)):
                    raise WrongPassword("old_password is not the account's password")
                changes["password"] = await self._hashed(password)
            user = await self._store.users.update(principal.user_id, changes, audit=entry)
        self._authenticator.forget()
        return user

    async def delete_user(self, caller: Caller, user_id: int) -> None:
        async with self._audit.change(caller, "delete_user", "user", user_id) as entry:
            caller.principal.scope(ADMIN)
            await self._store.users.delete(user_id, entry)
        self._authenticator.forget()

    async def set_bindings(
        self, caller: Caller, user_id: int, bindings: list[Binding]
    ) -> dict[str, Any]:
        async with self._audit.change(
            caller, "set_user_roles", "user", user_id, ["roles"]
        ) as entry:
            caller.principal.scope(ADMIN)
            user = await self._store.users.update(user_id, {}, bindings, entry)
        self._authenticator.forget()
        return user

    # --- roles -------------------------------------------------------------------------------

    async def create_role(self, caller: Caller, values: dict[str, Any]) -> dict[str, Any]:
        role_id = self._ids.next_id()
        async with self._audit.change(caller, "create_role", "role", role_id, values) as entry:
            caller.principal.scope(ADMIN)
            role = await self._store.roles.create({**values, "role_id": role_id}, entry)
        self._authenticator.forget()
        return role

    async def update_role(
        self, caller: Caller, role_id: int, changes: dict[str, Any]
    ) -> dict[str, Any]:
        async with self._audit.change(caller, "update_role", "role", role_id, changes) as entry:
            caller.principal.scope(ADMIN)
            role = await self._store.roles.update(role_id, changes, entry)
        self._authenticator.forget()
        return role

    async def delete_role(self, caller: Caller, role_id: int) -> None:
        async with self._audit.change(caller, "delete_role", "role", role_id) as entry:
            caller.principal.scope(ADMIN)
            await self._store.roles.delete(role_id, entry)
        self._authenticator.forget()

    # --- API keys ----------------------------------------------------------------------------

    async def create_key(
        self,
        caller: Caller,
        name: str,
        user_id: int | None,
        bindings: list[Binding] | None,
        expires_at: datetime | None,
    ) -> tuple[dict[str, Any], str]:
        """A key for the caller's own user, or (``users:admin``) for ``user_id``;
        without ``bindings`` it gets its owner's. Returns the row and the key, shown
        once."""
        key_id = self._ids.next_id()
        principal = caller.principal
        fields = ["name", "roles", *(["expires_at"] if expires_at else [])]
        async with self._audit.change(caller, "create_api_key", "api_key", key_id, fields) as entry:
            owner = user_id if user_id is not None else principal.user_id
            if owner is None:
                raise AccessDenied("a user to own the key (give user_id)")
            if owner != principal.user_id or principal.kind != "user":
                principal.scope(ADMIN)  # keys for others, and keys minted by keys
            owner_row = await self._store.users.get(owner)
            if bindings is None:
                bindings = [Binding(b.role, b.group_id) for b in owner_row["bindings"]]
            if not principal.may(ADMIN):
                await self._within(principal, bindings)
            new = new_api_key()
            values = {"key_id": key_id, "user_id": owner, "name": name, "prefix": new.prefix,
                      "digest": new.digest, "created_by": principal.user_id,
                      "expires_at": expires_at}  # fmt: skip
            row = await self._store.api_keys.create(values, bindings, entry)
        return row, new.key

    async def _within(self, principal: Principal, bindings: Iterable[Binding]) -> None:
        """Refuse bindings that would give a key more than its maker holds."""
        roles = {role["code"]: role for role in await self._store.roles.list()}
        for binding in bindings:
            role = roles.get(binding.role)
            if role is None:
                raise RoleNotFound(binding.role)
            for permission in role["permissions"]:
                scope = principal.permissions.get(permission, frozenset())
                if scope is None:
                    continue
                if binding.group_id is None or binding.group_id not in scope:
                    raise AccessDenied(permission, everywhere=binding.group_id is None)

    async def revoke_key(self, caller: Caller, key_id: int) -> dict[str, Any]:
        """The caller's own key, or anyone's with ``users:admin``; another's key is
        not found otherwise."""
        async with self._audit.change(caller, "revoke_api_key", "api_key", key_id) as entry:
            key = await self._store.api_keys.get(key_id)
            principal = caller.principal
            if key["user_id"] != principal.user_id and not principal.may(ADMIN):
                raise ApiKeyNotFound(key_id)
            key = await self._store.api_keys.revoke(key_id, entry)
        self._authenticator.forget()
        return key
