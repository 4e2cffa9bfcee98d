"""The permissions a role can hold, and the three roles every installation has.

Theory of operation
-------------------
A role is a named list of permissions. A *binding* gives a user (or an API key) a
role, either everywhere (``group_id`` null) or on one device group: then the
role's device permissions reach only the devices of that group, and the group
itself. ``users:admin`` and ``audit:read`` are about the installation, not about
devices, so they count only from a binding without a group.

Every route declares the one permission it needs (``controller/api/routing.py``);
the principal of the request answers with where it holds it: everywhere, on some
groups, or nowhere (403). The built-in roles are defined here, in code, and put
into the database at start-up: ``admin`` always holds every permission, so a new
permission reaches it without a migration.
"""

from __future__ import annotations

from dataclasses import dataclass

PERMISSIONS: dict[str, str] = {
    "devices:read": "Read devices, their event log, live status, groups and fleet counts",
    "devices:write": "Register, change and delete devices",
    "commands:send": "Send commands to devices and groups",
    "groups:read": "Read groups and memberships",
    "groups:write": "Create, change and delete groups; put devices in and out of them",
    "records:read": "Read the records devices upload",
    "config:write": "Change the desired configuration of devices",
    "jobs:write": "Start and cancel jobs",
    "artifacts:write": "Upload and delete software artifacts (installation-wide)",
    "users:admin": "Manage users, roles, bindings and everyone's API keys",
    "audit:read": "Read the audit log",
}
"""Every permission, with what it allows (shown in the OpenAPI document)."""

INSTALLATION_WIDE = frozenset({"users:admin", "audit:read"})
"""Permissions that a binding limited to a group does not give."""

AUTHENTICATED = "authenticated"
"""What a route declares that any signed-in principal may call (its own account,
its own keys): no permission, but not public either."""


@dataclass(frozen=True)
class BuiltinRole:
    role_id: int
    code: str
    name: str
    description: str
    permissions: tuple[str, ...]


BUILTIN_ROLES = (
    BuiltinRole(1, "admin", "Administrator", "Everything.", tuple(PERMISSIONS)),
    BuiltinRole(
        2,
        "operator",
        "Operator",
        "Reads and changes devices, groups, records, configuration, commands, jobs and "
        "software artifacts.",
        (
            "devices:read",
            "devices:write",
            "commands:send",
            "groups:read",
            "groups:write",
            "records:read",
            "config:write",
            "jobs:write",
            "artifacts:write",
        ),
    ),
    BuiltinRole(
        3,
        "viewer",
        "Viewer",
        "Reads devices, groups and records.",
        ("devices:read", "groups:read", "records:read"),
    ),
)
"""Ids 1-3 are reserved for them; other roles get snowflake ids."""

ADMIN_ROLE_ID = BUILTIN_ROLES[0].role_id
BUILTIN_BY_CODE = {role.code: role for role in BUILTIN_ROLES}
