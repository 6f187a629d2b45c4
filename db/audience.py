"""Who is in a segment, and who may be sent to: the audience rules the API and the sends share.

STATIC segments list their members; DYNAMIC segments are a filter evaluated when asked (at
snapshot time for a send). Both only ever return customers of the segment's own tenant.

Consent and suppression are decided per customer and channel by `activities.send.gates.skip_reason`
over CONSENT_COLUMNS: an address on the channel, no unsubscribe (from a tracking link or `POST
/customers/:id/unsubscribe`), no hard bounce (email), an address not on the tenant's suppression
list, and the channel's opt-in. A send applies them twice: when the snapshot is taken and again
just before each message.
"""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, Select, and_, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import SegmentType
from db.customers import CustomerRow
from db.models import Customer, SegmentMember
from db.segment_filter import compile_filter
from db.segments import SegmentRow

# What decides whether a customer may be sent to, for `c` = customers (NULL `present`: deleted).
#
# Every rule is about the address, not only the customer record: addresses are stored in one
# canonical form (core.addresses), so plain equality finds every record of the tenant holding the
# same mailbox or number. An unsubscribe or a hard bounce recorded on any of them stops the others
# too (the person at that address said stop, or the mailbox does not exist), and the suppression
# list matches however the address was written when it was added. The lookups on other records
# read small partial indexes (only unsubscribed or bounced rows; migration 0005) and run only when
# the customer's own record has no such mark.
# A suppression-list entry reads as the reason a send records: the one stored with it when the
# service listed the address on a provider's word (COMPLAINED, UNSUBSCRIBED, ...), else SUPPRESSED.
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
    (SELECT COALESCE(s.reason, 'SUPPRESSED') FROM suppressions s WHERE s.tenant_id = c.tenant_id
     AND s.channel = 'EMAIL' AND s.address = c.email) AS email_suppressed,
    (SELECT COALESCE(s.reason, 'SUPPRESSED') FROM suppressions s WHERE s.tenant_id = c.tenant_id
     AND s.channel = 'SMS' AND s.address = c.phone) AS sms_suppressed
"""

# What a send needs of a recipient (`c` = customers): the personalisation fields and what decides
# consent (CONSENT_COLUMNS); `present` is NULL for a deleted customer.
RECIPIENT_COLUMNS = f"""
    c.first_name, c.last_name, c.club_id, c.external_id, c.attributes, c.timezone, {CONSENT_COLUMNS}
"""

_CONSENT = text(
    f"SELECT c.id AS id, {CONSENT_COLUMNS} FROM customers c WHERE c.id = ANY(:ids) AND c.tenant_id = :t"
)


def member_ids_query(segment: SegmentRow) -> Select[Any]:
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


def _key_column(segment: SegmentRow) -> Any:
    return SegmentMember.customer_id if segment.type == SegmentType.STATIC else Customer.id


async def member_ids_after(
    conn: AsyncConnection, segment: SegmentRow, after: str | None, limit: int
) -> list[str]:
    """The next `limit` member ids after `after` (None: from the first), in id order: one chunk of
    a snapshot, read through the keyset so that no chunk costs more than its own rows."""
    query = member_ids_query(segment)
    if after is not None:
        # Not repeated on the joined customers as the send page does (db.ledger.sends): on tables
        # not analyzed yet (a fresh import) that bound turned the hash join into a nested loop
        # twice as slow (190 against 84 ms a chunk of 10,000), more than an analyzed merge join
        # loses by reading the customers' key from its start (12-50 ms a chunk at 100,000).
        query = query.where(_key_column(segment) > after)
    return list((await conn.execute(query.limit(limit))).scalars())


async def segment_size(conn: AsyncConnection, segment: SegmentRow) -> int:
    sub = member_ids_query(segment).order_by(None).subquery()
    return int((await conn.execute(select(func.count()).select_from(sub))).scalar_one())


async def segment_sample(conn: AsyncConnection, segment: SegmentRow, limit: int) -> list[CustomerRow]:
    """The first `limit` members in keyset (id) order, as customer rows: ids are random, so this
    is a fair sample that costs an index range read, never a sort of the whole segment."""
    ids = member_ids_query(segment).limit(limit).subquery()
    rows = await conn.execute(
        select(Customer.__table__)
        .join(ids, Customer.id == next(iter(ids.c)))
        .where(Customer.tenant_id == segment.tenant_id)
        .order_by(Customer.id)
    )
    return [CustomerRow.of(row) for row in rows.mappings()]


async def consent_of(conn: AsyncConnection, tenant_id: str, customer_ids: Sequence[str]) -> list[RowMapping]:
    """`id` and CONSENT_COLUMNS of each customer of the tenant among `customer_ids` (the shape
    activities.send.gates.skip_reason reads)."""
    result = await conn.execute(_CONSENT, {"ids": list(customer_ids), "t": tenant_id})
    return list(result.mappings())
