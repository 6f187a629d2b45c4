"""Live counts of campaigns from the roll-ups, shared by GET /campaigns(/:id) and /stats.

Top-level counts are distinct recipients (channel ALL); see contract §9.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import InteractionType as T
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
    """Contract §9: rounded to 4 places, null when the denominator is 0."""
    return None if denominator == 0 else round(numerator / denominator, 4)


async def recipient_counts(conn: AsyncConnection, campaign_ids: Sequence[str]) -> dict[str, RecipientCounts]:
    if not campaign_ids:
        return {}
    rows = await conn.execute(
        text(
            "SELECT campaign_id, type, recipients FROM campaign_counters"
            " WHERE campaign_id = ANY(:ids) AND channel = :all"
        ),
        {"ids": list(campaign_ids), "all": ALL},
    )
    raw: dict[str, dict[str, int]] = {cid: {} for cid in campaign_ids}
    for campaign_id, type_, recipients in rows:
        raw[campaign_id][type_] = int(recipients)
    return {
        cid: RecipientCounts(
            sent=v.get(T.SENT, 0),
            delivered=v.get(T.DELIVERED, 0),
            opened=v.get(T.OPENED, 0),
            clicked=v.get(T.CLICKED, 0),
            converted=v.get(T.CONVERTED, 0),
            unsubscribed=v.get(T.UNSUBSCRIBED, 0),
            bounced=v.get(T.BOUNCED, 0),
            failed=v.get(T.FAILED, 0),
        )
        for cid, v in raw.items()
    }
