"""Group scope: where a caller may act, applied inside the queries."""

from __future__ import annotations

from sqlalchemy import BindParameter, ColumnElement, bindparam, select

from edgefleet.controller.store.schema import device_group_members

Scope = frozenset[int] | None
"""Everywhere (None), or the devices of these groups and the groups themselves. A
device or group outside is answered as if it did not exist."""


SCOPE = bindparam("scope", expanding=True)
"""The scope as a parameter, for statements built once (pass ``scope=list(groups)``)."""


def in_scope(
    device_id: ColumnElement[int], scope: frozenset[int] | BindParameter[int]
) -> ColumnElement[bool]:
    """``device_id`` is a member of one of the ``scope`` groups — by hand or by a
    group's selector: the matched memberships are rows of the same table, kept up
    to date as labels change (``controller.store.labels``)."""
    return device_id.in_(
        select(device_group_members.c.device_id).where(device_group_members.c.group_id.in_(scope))
    )
