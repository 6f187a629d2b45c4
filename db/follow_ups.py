"""Follow-ups from the ledger: the recipients of a campaign with a given outcome, and the link from
a follow-up campaign to its source (README "Honest engagement", docs/engagement.md).

A recipient is a customer of the source campaign (all its runs and channels together). Opens and
clicks are a person's only: an interaction classified `machine` (core.engagement) is ignored, one
without a class (a provider's webhook, or recorded before classification) counts as a person's.
"""

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_RECIPIENTS = text(
    """
    WITH r AS (
        SELECT d.customer_id,
               bool_or(d.outcome = 'SENT') AS sent,
               bool_or(d.outcome = 'SENT' AND d.channel = 'EMAIL') AS emailed,
               bool_or(d.outcome = 'UNKNOWN') AS unknown,
               bool_or(d.outcome = 'SKIPPED'
                       AND (CAST(:reason AS text) IS NULL OR d.reason = CAST(:reason AS text))) AS skipped
        FROM deliveries d
        WHERE d.campaign_id = :c
        GROUP BY d.customer_id
    ), h AS (
        SELECT customer_id, bool_or(type = 'OPENED') AS opened, bool_or(type = 'CLICKED') AS clicked
        FROM interactions
        WHERE campaign_id = :c AND type IN ('OPENED', 'CLICKED')
          AND engagement_class IS DISTINCT FROM 'machine'
        GROUP BY customer_id
    )
    SELECT r.customer_id
    FROM r LEFT JOIN h ON h.customer_id = r.customer_id
    WHERE CASE CAST(:audience AS text)
        WHEN 'NOT_OPENED' THEN r.emailed AND NOT COALESCE(h.opened OR h.clicked, false)
        WHEN 'NOT_CLICKED' THEN r.sent AND NOT COALESCE(h.clicked, false)
        WHEN 'OPENED_NOT_CLICKED'
            THEN r.emailed AND COALESCE(h.opened, false) AND NOT COALESCE(h.clicked, false)
        WHEN 'UNKNOWN' THEN r.unknown AND NOT r.sent
        WHEN 'SKIPPED' THEN r.skipped AND NOT r.sent
        ELSE false
    END
    ORDER BY r.customer_id
    """
)


async def recipients_with_outcome(
    conn: AsyncConnection, campaign_id: str, audience: str, reason: str | None
) -> list[str]:
    """Customer ids of the campaign's recipients with that outcome (db docstring), in id order."""
    rows = await conn.execute(_RECIPIENTS, {"c": campaign_id, "audience": audience, "reason": reason})
    return [str(r[0]) for r in rows]


_LINK = text(
    """
    UPDATE campaigns SET source_campaign_id = :source, follow_up = CAST(:info AS jsonb)
    WHERE id = :id AND tenant_id = :t
    """
)


async def link_to_source(
    conn: AsyncConnection, campaign_id: str, tenant_id: str, source_id: str, info: dict[str, Any]
) -> None:
    """Record that `campaign_id` is a follow-up of `source_id`, and how its audience was built."""
    params = {"id": campaign_id, "t": tenant_id, "source": source_id, "info": json.dumps(info)}
    await conn.execute(_LINK, params)


@dataclass(frozen=True)
class FollowUpLink:
    source_campaign_id: str | None
    follow_up: dict[str, Any] | None


async def follow_up_link(conn: AsyncConnection, campaign_id: str, tenant_id: str) -> FollowUpLink | None:
    """A campaign's source and follow-up record (both None for a campaign that is no follow-up);
    None when the tenant has no such campaign."""
    row = (
        await conn.execute(
            text("SELECT source_campaign_id, follow_up FROM campaigns WHERE id = :id AND tenant_id = :t"),
            {"id": campaign_id, "t": tenant_id},
        )
    ).first()
    return None if row is None else FollowUpLink(row[0], row[1])


async def drop_segment(conn: AsyncConnection, tenant_id: str, segment_id: str) -> None:
    """Remove a follow-up's segment whose campaign could not be created (its members go with it)."""
    await conn.execute(
        text("DELETE FROM segments WHERE id = :s AND tenant_id = :t"), {"s": segment_id, "t": tenant_id}
    )
