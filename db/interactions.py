"""The tracking endpoints' writes: each is one statement, so a click costs one round trip.

Opens and clicks are appended in batches (`append_tracked`): one `INSERT ... SELECT` that joins
the deliveries named by the tokens, so a token whose delivery is not of its campaign inserts
nothing, and `ON CONFLICT (event_key) ... DO NOTHING` (on the unique index of the keyed rows)
drops replays inside a batch and across batches alike. Nothing is rolled up here: the background
roll-up (db.rollups.roll_up_pending) counts the rows later, and the stats add the rows it has
not reached yet, so they stay exact.

Each open and click arrives with the request's verdict (core.engagement rule 1, or none); the INSERT
applies the timing rule with the delivery's `sent_at` it joins anyway (rule 2) and stores
`engagement_class` and `class_reason`. After a batch with clicks, `mark_link_bursts` applies rule 3.

A one-click unsubscribe (`unsubscribe_recipient`) records the interaction once per message and sets the
channel's `*_unsubscribed_at` on the customer in the same statement.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.engagement import LINK_BURST, SOON_AFTER_SENT, EngagementClass, Reason
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
    # The request's machine verdict (core.engagement.request_verdict); None: the database decides.
    engagement_class: str | None = None
    class_reason: str | None = None


_APPEND = text(
    """
    INSERT INTO interactions
        (id, tenant_id, campaign_id, delivery_id, customer_id, channel, type, occurred_at,
         metadata, event_key, engagement_class, class_reason)
    SELECT v.id, d.tenant_id, d.campaign_id, d.id, d.customer_id, d.channel, v.type, v.at,
           CAST(v.metadata AS jsonb), v.event_key,
           COALESCE(v.class, CASE WHEN t.soon THEN CAST(:machine AS text) ELSE CAST(:human AS text) END),
           COALESCE(v.reason, CASE WHEN t.soon THEN CAST(:soon_reason AS text)
                                   ELSE CAST(:human_reason AS text) END)
    FROM unnest(CAST(:ids AS text[]), CAST(:deliveries AS text[]), CAST(:campaigns AS text[]),
                CAST(:types AS text[]), CAST(:times AS timestamptz[]), CAST(:metadata AS text[]),
                CAST(:keys AS text[]), CAST(:classes AS text[]), CAST(:reasons AS text[]))
         AS v(id, delivery_id, campaign_id, type, at, metadata, event_key, class, reason)
    JOIN deliveries d ON d.id = v.delivery_id AND d.campaign_id = v.campaign_id
    CROSS JOIN LATERAL (
        SELECT COALESCE(v.at < d.sent_at + make_interval(secs => CAST(:soon AS double precision)), false)
    ) AS t(soon)
    ON CONFLICT (event_key) WHERE event_key IS NOT NULL DO NOTHING
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
            "classes": [e.engagement_class for e in events],
            "reasons": [e.class_reason for e in events],
            "soon": SOON_AFTER_SENT.total_seconds(),
            "machine": EngagementClass.MACHINE.value,
            "human": EngagementClass.HUMAN.value,
            "soon_reason": Reason.SOON_AFTER_SENT.value,
            "human_reason": Reason.NO_SIGNAL.value,
        },
    )
    return int(result.rowcount)


# Rule 3 (core.engagement): a click is a machine's when another link of the same message was
# followed within LINK_BURST of it, either side. Only rows no roll-up has counted yet change (a
# counted row keeps the class it was counted with); the background roll-up waits LINK_BURST before
# counting a click, so a burst is settled before it is counted. `type <> 'SENT'` restates what
# `:clicked` implies, so that a plan made for any value (a prepared statement's generic plan) can
# still read `ix_interactions_delivery`, which leaves SENT rows out (migration 0014).
_LINK_BURSTS = text(
    """
    UPDATE interactions i SET engagement_class = :machine, class_reason = :reason
    WHERE i.delivery_id = ANY(:deliveries) AND i.type = :clicked AND i.type <> 'SENT' AND NOT i.rolled_up
      AND i.engagement_class = :human
      AND EXISTS (
        SELECT 1 FROM interactions j
        WHERE j.delivery_id = i.delivery_id AND j.type = :clicked AND j.type <> 'SENT'
          AND j.metadata->>'linkId' IS DISTINCT FROM i.metadata->>'linkId'
          AND abs(extract(epoch FROM j.occurred_at - i.occurred_at)) <= CAST(:burst AS double precision)
      )
    """
)


async def mark_link_bursts(conn: AsyncConnection, delivery_ids: Sequence[str]) -> int:
    """Reclassify as `machine` (`link-burst`) the not-yet-counted clicks of these messages that
    have a click on another link within LINK_BURST; rows changed."""
    if not delivery_ids:
        return 0
    params = {
        "deliveries": sorted(set(delivery_ids)),
        "clicked": InteractionType.CLICKED.value,
        "machine": EngagementClass.MACHINE.value,
        "human": EngagementClass.HUMAN.value,
        "reason": Reason.LINK_BURST.value,
        "burst": LINK_BURST.total_seconds(),
    }
    return int((await conn.execute(_LINK_BURSTS, params)).rowcount)


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
        ON CONFLICT (event_key) WHERE event_key IS NOT NULL DO NOTHING
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
