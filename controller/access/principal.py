"""Who is calling, what they may do where, and the audit record of what they did.

A ``Principal`` is resolved once per request by the auth middleware (a user with
an access token, an API key, or the bootstrap token) and carries its bindings.
``scope(permission)`` is the one question every route asks: everywhere (None),
some groups (their ids), or nowhere (``AccessDenied``, answered 403).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from edgefleet.controller.access.permissions import INSTALLATION_WIDE, PERMISSIONS
from edgefleet.controller.store import AuditEntry, HeldRole, Scope


class AccessDenied(Exception):
    """The caller lacks ``permission`` (anywhere, or everywhere when it is needed so)."""

    def __init__(self, permission: str, everywhere: bool = False) -> None:
        where = " on all devices" if everywhere else ""
        super().__init__(f"permission {permission}{where} is required")
        self.permission = permission


def effective(held: Iterable[HeldRole], superuser: bool) -> dict[str, Scope]:
    """Each permission held, and where: None for everywhere, else the groups."""
    if superuser:
        return dict.fromkeys(PERMISSIONS)
    everywhere: set[str] = set()
    groups: dict[str, set[int]] = {}
    for role in held:
        for permission in role.permissions & PERMISSIONS.keys():
            if role.group_id is None:
                everywhere.add(permission)
            elif permission not in INSTALLATION_WIDE:
                groups.setdefault(permission, set()).add(role.group_id)
    scopes: dict[str, Scope] = {p: frozenset(g) for p, g in groups.items()}
    scopes.update(dict.fromkeys(everywhere))
    return scopes


def _narrowed(permissions: dict[str, Scope], limit: dict[str, Scope]) -> dict[str, Scope]:
    """Each permission where both maps hold it."""
    narrowed: dict[str, Scope] = {}
    for permission, scope in permissions.items():
        if permission not in limit:
            continue
        bound = limit[permission]
        if scope is None or bound is None:
            narrowed[permission] = bound if scope is None else scope
        elif scope & bound:
            narrowed[permission] = scope & bound
    return narrowed


@dataclass(frozen=True)
class Principal:
    kind: Literal["user", "api_key", "bootstrap", "anonymous"]
    id: int | None
    """The user's id, or the key's."""
    name: str
    """The user name, the key's prefix (``efk_…``), or ``bootstrap``."""
    user_id: int | None
    """The user, or the key's owner."""
    superuser: bool
    held: tuple[HeldRole, ...]
    limit: dict[str, Scope] | None = None
    """An API key's owner's permissions: the key never does more than its owner may
    now, whatever its own bindings say (None: no limit)."""
    permissions: dict[str, Scope] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        permissions = effective(self.held, self.superuser)
        if self.limit is not None:
            permissions = _narrowed(permissions, self.limit)
        object.__setattr__(self, "permissions", permissions)

    def scope(self, permission: str) -> Scope:
        """Where the caller holds ``permission``; raises ``AccessDenied`` if nowhere."""
        try:
            return self.permissions[permission]
        except KeyError:
            raise AccessDenied(permission) from None

    def everywhere(self, permission: str) -> None:
        """Raise unless ``permission`` is held on all devices (e.g. to register one,
        which then is in no group yet)."""
        if self.scope(permission) is not None:
            raise AccessDenied(permission, everywhere=True)

    def may(self, permission: str) -> bool:
        return permission in self.permissions


BOOTSTRAP = Principal("bootstrap", None, "bootstrap", None, True, ())


@dataclass(frozen=True)
class Caller:
    """A principal making one request: what the audit log records of it."""

    principal: Principal
    source: str
    request_id: str
    status: int = 200
    """The answer's status should the request succeed."""

    def entry(
        self,
        action: str,
        target_type: str,
        target_id: object = None,
        fields: Iterable[str] = (),
    ) -> AuditEntry:
        principal = self.principal
        return AuditEntry(
            actor_type=principal.kind,
            actor_id=principal.id,
            actor_name=principal.name,
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            source_address=self.source,
            request_id=self.request_id,
            http_status=self.status,
            fields=tuple(sorted(set(fields))),
        )


ANONYMOUS = Principal("anonymous", None, "anonymous", None, False, ())
"""The actor of a request made before anyone is known (a sign-in, a registration)."""
