"""Live counts of campaigns from the roll-ups, shared by GET /campaigns(/:id) and /stats.

Top-level counts are distinct recipients (channel ALL); see README "Stats". Both endpoints turn
counter rows into `RecipientCounts` through `counts_from`, and both add the interactions the
background roll-up has not counted yet, so they cannot disagree.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import InteractionType as T
from db.driver import driver_of
from db.rollups import ALL


@dataclass(frozen=True)
class RecipientCounts:
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    converted: int = 0
    unsubscribed: int = 0
    bounced: int = 0
    failed: int = 0


def rate(numerator: int, denominator: int) -> float | None:
    """Rounded to 4 places, null when the denominator is 0 (README "Stats": the rates)."""
    return None if denominator == 0 else round(numerator / denominator, 4)


def counts_from(by_type: Mapping[str, int]) -> RecipientCounts:
    """{interaction type: count} of one campaign (and one channel, or ALL) as `RecipientCounts`."""
    return RecipientCounts(
        sent=by_type.get(T.SENT, 0),
        delivered=by_type.get(T.DELIVERED, 0),
        opened=by_type.get(T.OPENED, 0),
        clicked=by_type.get(T.CLICKED, 0),
        converted=by_type.get(T.CONVERTED, 0),
        unsubscribed=by_type.get(T.UNSUBSCRIBED, 0),
        bounced=by_type.get(T.BOUNCED, 0),
        failed=by_type.get(T.FAILED, 0),
    )


# The counters, the sends' tallies not folded into them yet (db.rollups), plus the recipients of
# interactions the background roll-up has not counted yet
# (db.stats does the same for /stats), in one statement: one snapshot, exact whatever the lag.
_RECIPIENTS = """
    WITH fresh AS (
        SELECT DISTINCT i.campaign_id, i.type, i.customer_id
        FROM interactions i
        WHERE i.campaign_id = ANY(%(ids)s) AND NOT i.rolled_up
          AND NOT EXISTS (
              SELECT 1 FROM interaction_firsts f
              WHERE f.campaign_id = i.campaign_id AND f.type = i.type AND f.channel = %(all)s
                AND f.customer_id = i.customer_id
          )
    )
    SELECT campaign_id, type, recipients FROM campaign_counters
    WHERE campaign_id = ANY(%(ids)s) AND channel = %(all)s
    UNION ALL
    SELECT campaign_id, type, recipients FROM counter_deltas
    WHERE campaign_id = ANY(%(ids)s) AND channel = %(all)s
    UNION ALL
    SELECT campaign_id, type, count(*) FROM fresh GROUP BY campaign_id, type
"""


async def recipient_counts(conn: AsyncConnection, campaign_ids: Sequence[str]) -> dict[str, RecipientCounts]:
    """Per campaign, its distinct recipients by type; straight to the driver, prepared (the list
    asks it for every page: SQLAlchemy's execution layer cost more than the statement)."""
    if not campaign_ids:
        return {}
    driver = await driver_of(conn)
    async with driver.cursor() as cursor:
        await cursor.execute(_RECIPIENTS, {"ids": list(campaign_ids), "all": ALL}, prepare=True)
        rows = await cursor.fetchall()
    raw: dict[str, dict[str, int]] = {cid: {} for cid in campaign_ids}
    for campaign_id, type_, recipients in rows:
        by_type = raw[campaign_id]
        by_type[type_] = by_type.get(type_, 0) + int(recipients)
    return {cid: counts_from(v) for cid, v in raw.items()}
