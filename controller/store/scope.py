"""Group scope: where a caller may act, applied inside the queries."""

from __future__ import annotations

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    String,
    bindparam,
    cast,
    exists,
    func,
    literal_column,
    select,
)

from edgefleet.controller.store.schema import device_group_members

Scope = frozenset[int] | None
"""Everywhere (None), or the devices of these groups and the groups themselves. A
device or group outside is answered as if it did not exist."""


def in_scope(device_id: ColumnElement[int], scope: frozenset[int]) -> ColumnElement[bool]:
    """``device_id`` is a member of one of the ``scope`` groups — by hand or by a
    group's selector: the matched memberships are rows of the same table, kept up
    to date as labels change (``controller.store.labels``). For the many devices
    of a list: the groups' members are found through the group index."""
    return device_id.in_(
        select(device_group_members.c.device_id).where(device_group_members.c.group_id.in_(scope))
    )


SCOPE_GROUPS = bindparam("scope_groups", type_=String)
"""The scope as one parameter, for ``device_in_scope``: pass ``listed(scope)``."""


def listed(scope: frozenset[int]) -> str:
    """The scope's group ids, comma separated, as ``SCOPE_GROUPS`` takes them."""
    return ",".join(map(str, scope))


_COMMA = literal_column("','", String)


def device_in_scope(device_id: BindParameter[int]) -> ColumnElement[bool]:
    """The one device ``device_id`` is a member of one of the ``SCOPE_GROUPS``.

    For reading a device by its id, the hottest scoped query, where it costs less
    than ``in_scope``: the database reads that device's few memberships by the
    primary key's prefix and looks each group up in the list, with no subquery to
    materialise into a temporary table (MariaDB's plan for the semi-join). And the
    statement is the same whatever the groups, so SQLAlchemy compiles it once and
    never rewrites it for an expanding parameter. The commas around both sides make
    a group match by its whole id only (12 is not in "123"). A device's groups are
    few, so matching them as text costs nothing that shows; a list must not use
    this, as it would test every device's memberships instead of reading only the
    groups' members."""
    member = _COMMA + cast(device_group_members.c.group_id, String) + _COMMA
    return exists().where(
        device_group_members.c.device_id == device_id,
        func.instr(_COMMA + SCOPE_GROUPS + _COMMA, member) > literal_column("0"),
    )
