"""The tracking endpoints' writes: each is one statement, so a click costs one round trip.

Opens and clicks are appended in batches (`append_tracked`): one `INSERT ... SELECT` that joins
the deliveries named by the tokens, so a token whose delivery is not of its campaign inserts
nothing, and `ON CONFLICT (event_key) DO NOTHING` drops replays inside a batch and across
batches alike. Nothing is rolled up here: the background roll-up (db.rollups.roll_up_pending)
counts the rows later, and the stats add the rows it has not reached yet, so they stay exact.

A one-click unsubscribe (`unsubscribe_recipient`) records the interaction once per message and sets the
channel's `*_unsubscribed_at` on the customer in the same statement.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import InteractionType
from core.ids import new_id


@dataclass(frozen=True)
class TrackedEvent:
    """An open or a click as its token asserts it: the message is looked up when it is stored."""

    delivery_id: str
    campaign_id: str
    type: str
    occurred_at: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    event_key: str | None = None


_APPEND = text(
    """
    INSERT INTO interactions
        (id, tenant_id, campaign_id, delivery_id, customer_id, channel, type, occurred_at,
         metadata, event_key)
    SELECT v.id, d.tenant_id, d.campaign_id, d.id, d.customer_id, d.channel, v.type, v.at,
           CAST(v.metadata AS jsonb), v.event_key
    FROM unnest(CAST(:ids AS text[]), CAST(:deliveries AS text[]), CAST(:campaigns AS text[]),
                CAST(:types AS text[]), CAST(:times AS timestamptz[]), CAST(:metadata AS text[]),
                CAST(:keys AS text[]))
         AS v(id, delivery_id, campaign_id, type, at, metadata, event_key)
    JOIN deliveries d ON d.id = v.delivery_id AND d.campaign_id = v.campaign_id
    ON CONFLICT (event_key) DO NOTHING
    """
)


async def append_tracked(conn: AsyncConnection, events: Sequence[TrackedEvent]) -> int:
    """Insert the events whose delivery belongs to the campaign their token names; rows inserted.

    The caller runs it in autocommit (or commits at once): an event is acknowledged only after this
    statement is durable."""
    if not events:
        return 0
    result = await conn.execute(
        _APPEND,
        {
            "ids": [new_id("interaction") for _ in events],
            "deliveries": [e.delivery_id for e in events],
            "campaigns": [e.campaign_id for e in events],
            "types": [e.type for e in events],
            "times": [e.occurred_at for e in events],
            "metadata": [json.dumps(e.metadata) for e in events],
            "keys": [e.event_key for e in events],
        },
    )
    return int(result.rowcount)


_UNSUBSCRIBE = text(
    """
    WITH m AS (
        SELECT id, tenant_id, campaign_id, customer_id, channel FROM deliveries
        WHERE id = :delivery AND campaign_id = :campaign
    ), recorded AS (
        INSERT INTO interactions
            (id, tenant_id, campaign_id, delivery_id, customer_id, channel, type, occurred_at,
             metadata, event_key)
        SELECT :id, m.tenant_id, m.campaign_id, m.id, m.customer_id, m.channel, :type, :at,
               CAST('{}' AS jsonb), :key
        FROM m
        ON CONFLICT (event_key) DO NOTHING
    ), suppressed AS (
        UPDATE customers c SET
            email_unsubscribed_at = CASE WHEN m.channel = 'EMAIL'
                THEN COALESCE(c.email_unsubscribed_at, :at) ELSE c.email_unsubscribed_at END,
            sms_unsubscribed_at = CASE WHEN m.channel = 'SMS'
                THEN COALESCE(c.sms_unsubscribed_at, :at) ELSE c.sms_unsubscribed_at END,
            updated_at = now()
        FROM m WHERE c.id = m.customer_id AND c.tenant_id = m.tenant_id
    )
    SELECT count(*) FROM m
    """
)


async def unsubscribe_recipient(
    conn: AsyncConnection, delivery_id: str, campaign_id: str, at: datetime
) -> bool:
    """Unsubscribe the recipient of a message from its channel; False when the message is not of
    that campaign (nothing changes). UNSUBSCRIBED is recorded once per message: a second POST
    only confirms."""
    params = {
        "delivery": delivery_id,
        "campaign": campaign_id,
        "id": new_id("interaction"),
        "type": InteractionType.UNSUBSCRIBED.value,
        "at": at,
        "key": f"unsubscribe:{delivery_id}",
    }
    return int((await conn.execute(_UNSUBSCRIBE, params)).scalar_one()) > 0
