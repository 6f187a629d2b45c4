"""Pages of a tenant's rows, newest first: the one listing statement every list endpoint shares.

Every list of the API (customers, segments, templates, suppressions) is the same two reads: how
many rows match, and one window of them ordered by creation time with the id as tie-breaker (the
`ix_<table>_tenant_created` indexes serve both). Writing them once keeps the order and the count
from drifting apart between resources.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import ColumnElement, FromClause, RowMapping, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

R = TypeVar("R")


@dataclass(frozen=True)
class Window:
    """Which rows of a listing: `take` rows after skipping `skip`."""

    skip: int
    take: int


@dataclass(frozen=True)
class Slice(Generic[R]):
    """One window of a listing and how many rows the whole listing holds."""

    total: int
    rows: list[R]


async def newest_first(
    conn: AsyncConnection,
    table: FromClause,
    where: ColumnElement[bool],
    window: Window,
    row: Callable[[RowMapping], R],
) -> Slice[R]:
    """The rows of `table` matching `where` in the window, newest first, as `row` builds them."""
    total = int((await conn.execute(select(func.count()).select_from(table).where(where))).scalar_one())
    result = await conn.execute(
        select(table)
        .where(where)
        .order_by(table.c.created_at.desc(), table.c.id.desc())
        .offset(window.skip)
        .limit(window.take)
    )
    return Slice(total, [row(r) for r in result.mappings()])
