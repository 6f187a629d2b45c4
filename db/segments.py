"""Segments of a tenant: reading, creating and listing them, and the members of STATIC ones.

Who is in a segment (a DYNAMIC one's filter evaluated, a STATIC one's list) is db.audience; this
module holds the segment records themselves, each statement in one function, every record a
typed `SegmentRow`.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, and_, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import SegmentType
from core.ids import new_id
from db.models import Segment
from db.pages import Slice, Window, newest_first
from db.rows import row_of

_ADD_MEMBERS = text(
    "INSERT INTO segment_members (segment_id, customer_id) "
    "SELECT :segment_id, unnest(CAST(:customer_ids AS varchar[])) "
    "ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True)
class SegmentRow:
    """One stored segment, every column of `segments`. `filter` is set for DYNAMIC ones only."""

    id: str
    tenant_id: str
    club_id: str | None
    name: str
    description: str | None
    type: str
    filter: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: RowMapping) -> "SegmentRow":
        return row_of(cls, row)


@dataclass(frozen=True)
class SegmentFilter:
    tenant_id: str
    club_id: str | None = None
    type: SegmentType | None = None


async def owned_segment(
    conn: AsyncConnection, tenants: Collection[str], segment_id: str
) -> SegmentRow | None:
    """The segment with this id if it belongs to one of `tenants`."""
    row = (
        (
            await conn.execute(
                select(Segment.__table__).where(Segment.id == segment_id, Segment.tenant_id.in_(tenants))
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else SegmentRow.of(row)


async def load_segment(conn: AsyncConnection, tenant_id: str, segment_id: str) -> SegmentRow | None:
    """The segment of this tenant, or None (a campaign may name one that is gone)."""
    return await owned_segment(conn, [tenant_id], segment_id)


async def insert_segment(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    club_id: str | None,
    name: str,
    description: str | None,
    type: SegmentType,
    filter: dict[str, Any] | None,
) -> str:
    """A new segment, its id returned; `filter` only for a DYNAMIC one (a STATIC one's members are
    added after)."""
    segment_id = new_id("segment")
    await conn.execute(
        insert(Segment).values(
            id=segment_id,
            tenant_id=tenant_id,
            club_id=club_id,
            name=name,
            description=description,
            type=type.value,
            filter=filter if type == SegmentType.DYNAMIC else None,
        )
    )
    return segment_id


async def add_members(conn: AsyncConnection, segment_id: str, customer_ids: Sequence[str]) -> None:
    """Add customers to a STATIC segment; ids already in it are ignored."""
    await conn.execute(_ADD_MEMBERS, {"segment_id": segment_id, "customer_ids": list(customer_ids)})


async def mark_changed(conn: AsyncConnection, segment_id: str) -> None:
    """The segment's `updated_at` is now: its members changed after it was created."""
    await conn.execute(update(Segment).where(Segment.id == segment_id).values(updated_at=datetime.now(UTC)))


async def page_segments(conn: AsyncConnection, f: SegmentFilter, window: Window) -> Slice[SegmentRow]:
    conditions: list[ColumnElement[bool]] = [Segment.tenant_id == f.tenant_id]
    if f.club_id is not None:
        conditions.append(Segment.club_id == f.club_id)
    if f.type is not None:
        conditions.append(Segment.type == f.type.value)
    return await newest_first(conn, Segment.__table__, and_(*conditions), window, SegmentRow.of)
