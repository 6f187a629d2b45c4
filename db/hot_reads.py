"""The hottest read of the API, `GET /campaigns/:id`, as ONE statement (issue 19).

Dashboards poll a campaign while it sends. Read the plain way it took a transaction (BEGIN,
COMMIT) and three statements (the row, its counts, its segment's name): five round trips and three
passes through SQLAlchemy's execution for a few hundred bytes of answer. Here the row, its
segment's name and its live counts come from one statement, which is its own snapshot, so the
caller runs it without a transaction (an autocommit connection of the read pool, whose sessions are
read-only: api.deps.single_statement). psycopg prepares a statement run this often by itself (after
its 5th execution on a connection), so the plan is not made again per request.

The counts are exactly those of db.campaign_counts.recipient_counts (the roll-ups plus the distinct
recipients of the interactions the background roll-up has not counted yet), so this answer, the
list and /stats cannot disagree.
"""

from collections.abc import Collection
from dataclasses import dataclass

from db.campaign_counts import RecipientCounts, counts_from
from db.campaigns import CampaignRow, campaign_columns
from db.read_pool import Driver
from db.rollups import ALL


@dataclass(frozen=True)
class CampaignView:
    """A campaign of one of the caller's tenants, its segment's name and its live counts."""

    row: CampaignRow
    segment_name: str | None
    counts: RecipientCounts


# The campaign's columns are named in CampaignRow's order, so a row is spread into it by position
# (no dict per row). The segment is joined on the campaign's own tenant (as
# db.segments.owned_segment reads it). The counts: the counter rows of channel ALL and the sends'
# tallies not folded into them yet (db.rollups), plus per type
# the distinct recipients of pending interactions whose (type, recipient) no counted interaction
# has, as one JSON object by type.
_CAMPAIGN_VIEW = """
    SELECT {columns}, s.name AS hot_segment_name,
           (SELECT COALESCE(jsonb_object_agg(u.type, u.n), '{}'::jsonb)
            FROM (
                SELECT k.type, sum(k.n) AS n
                FROM (
                    SELECT cc.type, cc.recipients AS n FROM campaign_counters cc
                    WHERE cc.campaign_id = c.id AND cc.channel = %(all)s
                    UNION ALL
                    SELECT cd.type, cd.recipients FROM counter_deltas cd
                    WHERE cd.campaign_id = c.id AND cd.channel = %(all)s
                    UNION ALL
                    SELECT i.type, count(DISTINCT i.customer_id) FROM interactions i
                    WHERE i.campaign_id = c.id AND NOT i.rolled_up
                      AND NOT EXISTS (
                          SELECT 1 FROM interaction_firsts f
                          WHERE f.campaign_id = i.campaign_id AND f.type = i.type
                            AND f.channel = %(all)s AND f.customer_id = i.customer_id
                      )
                    GROUP BY i.type
                ) k
                GROUP BY k.type
            ) u) AS hot_counts
    FROM campaigns c
    LEFT JOIN segments s ON s.id = c.segment_id AND s.tenant_id = c.tenant_id
    WHERE c.id = %(id)s AND c.tenant_id = ANY(%(tenants)s)
    LIMIT 1
""".replace("{columns}", campaign_columns("c"))


async def campaign_view(driver: Driver, tenants: Collection[str], campaign_id: str) -> CampaignView | None:
    """The campaign `campaign_id` if one of `tenants` owns it, with its segment name and counts.

    On a driver connection (db.read_pool, or db.driver.driver_of under SQLAlchemy), prepared:
    SQLAlchemy's execution layer cost more than the statement's own client side."""
    params = {"id": campaign_id, "tenants": list(tenants), "all": ALL}
    async with driver.cursor() as cursor:
        await cursor.execute(_CAMPAIGN_VIEW, params, prepare=True)
        row = await cursor.fetchone()
    if row is None:
        return None
    *columns, segment_name, by_type = row
    counts = {str(k): int(v) for k, v in (by_type or {}).items()}
    return CampaignView(row=CampaignRow(*columns), segment_name=segment_name, counts=counts_from(counts))
