"""Roles (named permission lists) and the bindings that give them to users and keys.

A binding is (role, group or none). ``user_roles`` and ``api_key_roles`` have the
same shape, so one set of functions reads and replaces either.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, delete, func, insert, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.access.permissions import BUILTIN_ROLES, PERMISSIONS
from edgefleet.controller.store.audit import AuditEntry, write_audit
from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.errors import GroupNotFound, RoleConflict, RoleNotFound
from edgefleet.controller.store.schema import api_key_roles, device_groups, roles, user_roles


@dataclass(frozen=True)
class Binding:
    """A role held everywhere (``group_id`` None) or on one group's devices."""

    role: str
    """The role's code."""
    group_id: int | None = None


@dataclass(frozen=True)
class HeldRole:
    """A binding as a principal holds it: the role's permissions, where."""

    role: str
    permissions: frozenset[str]
    group_id: int | None


async def _fetch_role(connection: AsyncConnection, role_id: int) -> dict[str, Any]:
    row = (await connection.execute(select(roles).where(roles.c.role_id == role_id))).first()
    if row is None:
        raise RoleNotFound(role_id)
    return dict(row._mapping)


async def replace_bindings(
    connection: AsyncConnection,
    table: Table,
    owner: str,
    owner_id: int,
    bindings: Iterable[Binding],
) -> None:
    """Make ``owner_id``'s bindings in ``table`` exactly ``bindings`` (by role code);
    an unknown role or group raises ``RoleNotFound`` / ``GroupNotFound``."""
    wanted = sorted(set(bindings), key=lambda b: (b.role, b.group_id or 0))
    codes = {b.role for b in wanted}
    found = dict(
        (await connection.execute(select(roles.c.code, roles.c.role_id).where(
            roles.c.code.in_(codes)))).all()
    ) if codes else {}  # fmt: skip
    for code in codes - found.keys():
        raise RoleNotFound(code)
    groups = {b.group_id for b in wanted if b.group_id is not None}
    if groups:
        known = set(
            await connection.scalars(
                select(device_groups.c.group_id).where(device_groups.c.group_id.in_(groups))
            )
        )
        for group_id in sorted(groups - known):
            raise GroupNotFound(group_id)
    await connection.execute(delete(table).where(table.c[owner] == owner_id))
    if wanted:
        await connection.execute(
            insert(table),
            [{owner: owner_id, "role_id": found[b.role], "group_id": b.group_id} for b in wanted],
        )


async def held_roles(
    connection: AsyncConnection, table: Table, owner: str, owner_ids: Sequence[int]
) -> dict[int, list[HeldRole]]:
    """The bindings of each owner, with their roles' permissions."""
    if not owner_ids:
        return {}
    rows = await connection.execute(
        select(table.c[owner], roles.c.code, roles.c.permissions, table.c.group_id)
        .join(roles, roles.c.role_id == table.c.role_id)
        .where(table.c[owner].in_(list(owner_ids)))
        .order_by(roles.c.code, table.c.group_id)
    )
    held: dict[int, list[HeldRole]] = {owner_id: [] for owner_id in owner_ids}
    for owner_id, code, permissions, group_id in rows:
        held[owner_id].append(HeldRole(code, frozenset(permissions), group_id))
    return held


class RoleStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def ensure_builtin(self) -> None:
        """Insert the built-in roles that are missing; keep ``admin`` holding every
        permission the code knows (operator and viewer keep their edits)."""
        now = utcnow()
        async with self._db.begin() as connection:
            present = set(await connection.scalars(select(roles.c.code)))
            for role in BUILTIN_ROLES:
                if role.code not in present:
                    await connection.execute(
                        insert(roles),
                        {
                            "role_id": role.role_id,
                            "code": role.code,
                            "name": role.name,
                            "description": role.description,
                            "permissions": list(role.permissions),
                            "builtin": True,
                            "created_at": now,
                            "updated_at": now,
                        },
                    )
            await connection.execute(
                update(roles)
                .where(roles.c.code == "admin")
                .values(permissions=list(PERMISSIONS), updated_at=now)
            )

    async def get(self, role_id: int) -> dict[str, Any]:
        async with self._db.read() as connection:
            return await _fetch_role(connection, role_id)

    async def list(self) -> list[dict[str, Any]]:
        async with self._db.read() as connection:
            rows = await connection.execute(select(roles).order_by(roles.c.role_id))
            return [dict(row) for row in rows.mappings()]

    async def create(
        self, values: dict[str, Any], audit: AuditEntry | None = None
    ) -> dict[str, Any]:
        now = utcnow()
        row = {"description": "", **values, "builtin": False, "created_at": now, "updated_at": now}
        try:
            async with self._db.begin() as connection:
                await connection.execute(insert(roles), row)
                await write_audit(connection, audit)
                return await _fetch_role(connection, row["role_id"])
        except IntegrityError as exc:
            raise RoleConflict(f"a role with code {values['code']!r} already exists") from exc

    async def update(
        self, role_id: int, changes: dict[str, Any], audit: AuditEntry | None = None
    ) -> dict[str, Any]:
        async with self._db.begin() as connection:
            role = await _fetch_role(connection, role_id)
            if role["code"] == "admin" and changes:
                raise RoleConflict("the admin role holds every permission; it cannot change")
            if "permissions" in changes and role["builtin"] and not changes["permissions"]:
                raise RoleConflict(f"the built-in role {role['code']!r} cannot be emptied")
            if changes:
                await connection.execute(
                    update(roles).where(roles.c.role_id == role_id).values(
                        **changes, updated_at=utcnow())
                )  # fmt: skip
            await write_audit(connection, audit)
            return await _fetch_role(connection, role_id)

    async def delete(self, role_id: int, audit: AuditEntry | None = None) -> None:
        async with self._db.begin() as connection:
            role = await _fetch_role(connection, role_id)
            if role["builtin"]:
                raise RoleConflict(f"the built-in role {role['code']!r} cannot be deleted")
            bound = await connection.scalar(
                select(func.count()).select_from(
                    union_all(
                        select(user_roles.c.role_id).where(user_roles.c.role_id == role_id),
                        select(api_key_roles.c.role_id).where(api_key_roles.c.role_id == role_id),
                    ).subquery()
                )
            )
            if bound:
                raise RoleConflict(
                    f"role {role['code']!r} is still bound {bound} time(s); unbind it first"
                )
            await connection.execute(delete(roles).where(roles.c.role_id == role_id))
            await write_audit(connection, audit)
