"""One page of a filtered, ordered list, with the count of all that match."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection


async def page_of(
    connection: AsyncConnection,
    table: Any,
    conditions: list[Any],
    order: list[Any],
    page: int,
    per_page: int,
) -> tuple[list[dict[str, Any]], int]:
    """(the rows of 1-based ``page``, how many rows match in all)."""
    total = await connection.scalar(select(func.count()).select_from(table).where(*conditions))
    rows = await connection.execute(
        select(table)
        .where(*conditions)
        .order_by(*order)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return [dict(row) for row in rows.mappings()], total or 0


def window(column: Any, since: Any, until: Any) -> list[Any]:
    """``since <= column < until``, each bound only when given."""
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return conditions
