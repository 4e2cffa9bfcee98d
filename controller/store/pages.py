"""One page of a filtered table, with the count of all the rows that match."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection


async def page_of(
    connection: AsyncConnection,
    table: Table,
    conditions: Sequence[ColumnElement[bool]],
    order_by: Sequence[ColumnElement[Any]],
    page: int,
    per_page: int,
    columns: Sequence[ColumnElement[Any]] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Rows of ``table`` matching every condition (``columns`` of them, by default
    all): page ``page`` (1-based), and how many match on all pages."""
    total = await connection.scalar(select(func.count()).select_from(table).where(*conditions))
    rows = await connection.execute(
        select(*(columns if columns is not None else [table]))
        .where(*conditions)
        .order_by(*order_by)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return [dict(row) for row in rows.mappings()], total or 0


async def first_row(connection: AsyncConnection, query: Any) -> dict[str, Any] | None:
    """The first row ``query`` finds, or None."""
    row = (await connection.execute(query)).mappings().first()
    return dict(row) if row is not None else None


def window(column: ColumnElement[Any], since: Any, until: Any) -> list[ColumnElement[bool]]:
    """``since <= column < until``, each bound only when given."""
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return conditions
