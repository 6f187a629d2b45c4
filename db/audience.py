"""Who is in a segment, and who may be sent to: the audience rules the API and the sends share.

STATIC segments list their members; DYNAMIC segments are a filter evaluated when asked (at
snapshot time for a send). Both only ever return customers of the segment's own tenant.

Consent and suppression are decided per customer and channel by `activities.send.gates.skip_reason`
over CONSENT_COLUMNS: an address on the channel, no unsubscribe (from a tracking link or `POST
/customers/:id/unsubscribe`), no hard bounce (email), an address not on the tenant's suppression
list, and the channel's opt-in. A send applies them twice: when the snapshot is taken and again
just before each message.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import Channel, SegmentType
from db.models import Customer, Segment, SegmentMember
from db.segment_filter import compile_filter

# What decides whether a customer may be sent to, for `c` = customers (NULL `present`: deleted).
#
# Every rule is about the address, not only the customer record: addresses are stored in one
# canonical form (core.addresses), so plain equality finds every record of the tenant holding the
# same mailbox or number. An unsubscribe or a hard bounce recorded on any of them stops the others
# too (the person at that address said stop, or the mailbox does not exist), and the suppression
# list matches however the address was written when it was added. The lookups on other records
# read small partial indexes (only unsubscribed or bounced rows; migration 0005) and run only when
# the customer's own record has no such mark.
CONSENT_COLUMNS = """
    c.id AS present, c.email, c.phone, c.email_opt_in, c.sms_opt_in,
    COALESCE(c.email_unsubscribed_at,
             (SELECT min(o.email_unsubscribed_at) FROM customers o
              WHERE o.tenant_id = c.tenant_id AND o.email = c.email
                AND o.email_unsubscribed_at IS NOT NULL)) AS email_unsubscribed_at,
    COALESCE(c.sms_unsubscribed_at,
             (SELECT min(o.sms_unsubscribed_at) FROM customers o
              WHERE o.tenant_id = c.tenant_id AND o.phone = c.phone
                AND o.sms_unsubscribed_at IS NOT NULL)) AS sms_unsubscribed_at,
    COALESCE(c.email_bounced_at,
             (SELECT min(o.email_bounced_at) FROM customers o
              WHERE o.tenant_id = c.tenant_id AND o.email = c.email
                AND o.email_bounced_at IS NOT NULL)) AS email_bounced_at,
    EXISTS (SELECT 1 FROM suppressions s WHERE s.tenant_id = c.tenant_id AND s.channel = 'EMAIL'
            AND s.address = c.email) AS email_suppressed,
    EXISTS (SELECT 1 FROM suppressions s WHERE s.tenant_id = c.tenant_id AND s.channel = 'SMS'
            AND s.address = c.phone) AS sms_suppressed
"""

# What a send needs of a recipient (`c` = customers): the personalisation fields and what decides
# consent (CONSENT_COLUMNS); `present` is NULL for a deleted customer.
RECIPIENT_COLUMNS = f"""
    c.first_name, c.last_name, c.club_id, c.external_id, c.attributes, {CONSENT_COLUMNS}
"""

_UNSUBSCRIBED_AT = {
    Channel.EMAIL: Customer.email_unsubscribed_at,
    Channel.SMS: Customer.sms_unsubscribed_at,
}


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


async def segment_sample(conn: AsyncConnection, segment: Segment, limit: int) -> list[Any]:
    """The first `limit` members in keyset (id) order, as customer rows: ids are random, so this
    is a fair sample that costs an index range read, never a sort of the whole segment."""
    ids = member_ids_query(segment).limit(limit).subquery()
    rows = await conn.execute(
        select(Customer.__table__)
        .join(ids, Customer.id == next(iter(ids.c)))
        .where(Customer.tenant_id == segment.tenant_id)
        .order_by(Customer.id)
    )
    return list(rows.mappings().all())


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


async def unsubscribe(
    conn: AsyncConnection, tenant_id: str, customer_id: str, channels: list[Channel]
) -> None:
    """Unsubscribe a customer from channels; an earlier unsubscribe keeps its time."""
    now = datetime.now(UTC)
    values = {_UNSUBSCRIBED_AT[ch].key: func.coalesce(_UNSUBSCRIBED_AT[ch], now) for ch in channels}
    await conn.execute(
        update(Customer)
        .where(Customer.id == customer_id, Customer.tenant_id == tenant_id)
        .values(**values, updated_at=text("now()"))
    )
