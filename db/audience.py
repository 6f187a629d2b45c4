"""Who is in a segment: the one place that turns a segment into customer ids (keyset order).

STATIC segments list their members; DYNAMIC segments are a filter evaluated when asked (at
snapshot time for a send). Both only ever return customers of the segment's own tenant.
"""

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import SegmentType
from db.models import Customer, Segment, SegmentMember
from db.segment_filter import compile_filter


def member_ids_query(segment: Segment) -> Select[Any]:
    """Customer ids of a segment, ordered by id (the keyset used by snapshots)."""
    if segment.type == SegmentType.STATIC:
        return (
            select(SegmentMember.customer_id)
            .join(Customer, Customer.id == SegmentMember.customer_id)
            .where(SegmentMember.segment_id == segment.id, Customer.tenant_id == segment.tenant_id)
            .order_by(SegmentMember.customer_id)
        )
    condition: ColumnElement[bool] = compile_filter(segment.filter or {})
    return (
        select(Customer.id)
        .where(and_(Customer.tenant_id == segment.tenant_id, condition))
        .order_by(Customer.id)
    )


def key_column(segment: Segment) -> Any:
    return SegmentMember.customer_id if segment.type == SegmentType.STATIC else Customer.id


async def segment_size(conn: AsyncConnection, segment: Segment) -> int:
    sub = member_ids_query(segment).order_by(None).subquery()
    return int((await conn.execute(select(func.count()).select_from(sub))).scalar_one())


async def load_segment(conn: AsyncConnection, tenant_id: str, segment_id: str) -> Segment | None:
    row = (
        await conn.execute(
            select(Segment.__table__).where(Segment.id == segment_id, Segment.tenant_id == tenant_id)
        )
    ).first()
    if row is None:
        return None
    seg = Segment(**row._mapping)
    return seg
