"""An A/B test's numbers and decision in the database (core.experiments; README "A/B tests").

The variants' opens and clicks are human counts (core.engagement), so the winner and the shown
`byVariant` figures are decided by people, not by image proxies and link scanners."""

from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import bindparam

from core.experiments import ABTest, Decision, VariantCounts

# A message's SENT row counts nothing below; `type <> 'SENT'` also lets the join read
# `ix_interactions_delivery`, which leaves SENT rows out (migration 0014).
_COUNTS = text(
    """
    WITH sent AS (
        SELECT variant, customer_id, id FROM deliveries
        WHERE campaign_id = :c AND variant IS NOT NULL AND outcome = 'SENT'
    )
    SELECT s.variant,
           count(DISTINCT s.customer_id) AS sent,
           count(DISTINCT i.customer_id) FILTER (WHERE i.type = 'DELIVERED') AS delivered,
           count(DISTINCT i.customer_id) FILTER (WHERE i.type = 'OPENED' AND i.engagement_class
                                                       IS DISTINCT FROM 'machine') AS opened,
           count(DISTINCT i.customer_id) FILTER (WHERE i.type = 'CLICKED' AND i.engagement_class
                                                       IS DISTINCT FROM 'machine') AS clicked,
           count(DISTINCT v.customer_id) AS converted
    FROM sent s
    LEFT JOIN interactions i ON i.delivery_id = s.id AND i.type <> 'SENT'
    LEFT JOIN interactions v ON v.campaign_id = :c AND v.customer_id = s.customer_id
                            AND v.type = 'CONVERTED'
    GROUP BY s.variant ORDER BY s.variant
    """
)


async def variant_counts(conn: AsyncConnection, campaign_id: str, test: ABTest) -> list[VariantCounts]:
    """Distinct recipients per variant: sent, delivered, opened, clicked, converted.

    Opens and clicks are a person's only (README "Honest engagement"): a machine's (a privacy
    proxy's prefetch, a link scanner) must not pick the winner. NULL (a provider's webhook, or
    recorded before classification) counts as a person's."""
    rows = {r[0]: r for r in await conn.execute(_COUNTS, {"c": campaign_id})}
    out = []
    for variant in test.variants:
        r = rows.get(variant.key)
        n = [int(x) for x in r[1:]] if r is not None else [0, 0, 0, 0, 0]
        out.append(
            VariantCounts(
                key=variant.key, sent=n[0], delivered=n[1], opened=n[2], clicked=n[3], converted=n[4]
            )
        )
    return out


_DECIDE = text(
    """
    UPDATE campaigns SET ab_winner = :w, ab_decision = :d, updated_at = now()
    WHERE id = :c AND tenant_id = :t AND ab_winner IS NULL
    """
).bindparams(bindparam("d", type_=JSONB))


async def record_decision(
    conn: AsyncConnection, campaign_id: str, tenant_id: str, decision: Decision
) -> None:
    """Record the winner unless one is recorded already (a retried decision keeps the first)."""
    params = {
        "c": campaign_id,
        "t": tenant_id,
        "w": decision.winner,
        "d": decision.model_dump(mode="json", by_alias=True),
    }
    await conn.execute(_DECIDE, params)


async def experiment(conn: AsyncConnection, campaign_id: str, tenant_id: str) -> dict[str, Any] | None:
    """The campaign's test, winner and decision as stored (None: no such campaign)."""
    row = (
        await conn.execute(
            text("SELECT ab_test, ab_winner, ab_decision FROM campaigns WHERE id = :c AND tenant_id = :t"),
            {"c": campaign_id, "t": tenant_id},
        )
    ).first()
    return None if row is None else {"ab_test": row[0], "ab_winner": row[1], "ab_decision": row[2]}


# ---- holdout groups ------------------------------------------------------------------------------

_HOLDOUT_CONVERSIONS = text(
    """
    INSERT INTO holdout_conversions (campaign_id, customer_id, tenant_id, event_id, occurred_at)
    SELECT c.id, CAST(:customer AS text), c.tenant_id, CAST(:event AS text), CAST(:at AS timestamptz)
    FROM campaigns c
    WHERE c.tenant_id = :tenant AND c.conversion_event = :type AND c.holdout_percent > 0
      AND EXISTS (
        SELECT 1 FROM deliveries d
        WHERE d.campaign_id = c.id AND d.customer_id = CAST(:customer AS text) AND d.outcome = 'SKIPPED'
          AND d.reason = 'HOLDOUT' AND d.updated_at <= CAST(:at AS timestamptz)
          AND d.updated_at >= CAST(:at AS timestamptz)
              - make_interval(hours => COALESCE(c.conversion_window_hours, CAST(:window AS int)))
      )
    ON CONFLICT DO NOTHING
    """
)


async def record_holdout_conversions(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    customer_id: str,
    event_type: str,
    event_id: str,
    at: Any,
    window_hours: int,
) -> int:
    """Attribute a conversion event to every campaign that held this person out (their holdout
    row decided within the campaign's conversion window before the event), once per campaign:
    the control side of the lift, as CONVERTED interactions are the messaged side."""
    params = {
        "tenant": tenant_id,
        "customer": customer_id,
        "type": event_type,
        "event": event_id,
        "at": at,
        "window": window_hours,
    }
    return (await conn.execute(_HOLDOUT_CONVERSIONS, params)).rowcount or 0


_GROUPS = text(
    """
    SELECT
      (SELECT count(DISTINCT customer_id) FROM deliveries WHERE campaign_id = :c AND outcome = 'SENT'),
      (SELECT count(DISTINCT customer_id) FROM interactions WHERE campaign_id = :c AND type = 'CONVERTED'),
      (SELECT count(DISTINCT customer_id) FROM deliveries
        WHERE campaign_id = :c AND outcome = 'SKIPPED' AND reason = 'HOLDOUT'),
      (SELECT count(*) FROM holdout_conversions WHERE campaign_id = :c)
    """
)


async def holdout_groups(conn: AsyncConnection, campaign_id: str) -> tuple[int, int, int, int]:
    """(messaged recipients, of them converted, holdout recipients, of them converted)."""
    row = (await conn.execute(_GROUPS, {"c": campaign_id})).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])
