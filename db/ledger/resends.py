"""An operator's resend of a campaign's UNKNOWN rows (README "Delivery guarantees (the ledger)").

The rows keep their ids (the idempotency key): a claim flips UNKNOWN to PENDING (db.ledger.sends,
`existing_rows`), a resend attempt that died leaves PENDING rows that the next resend turns back
into UNKNOWN first, and a recipient who unsubscribed or bounced since is SKIPPED instead.
"""

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from db.audience import RECIPIENT_COLUMNS

_ROWS = text(
    f"""
    SELECT d.id AS delivery_id, d.run_id, d.channel, d.customer_id AS id, {RECIPIENT_COLUMNS}
    FROM deliveries d
    LEFT JOIN customers c ON c.id = d.customer_id AND c.tenant_id = :tenant
    WHERE d.campaign_id = :campaign AND d.tenant_id = :tenant AND d.outcome = 'UNKNOWN'
      AND (CAST(:after AS text) IS NULL OR d.id > :after)
    ORDER BY d.id
    LIMIT :limit
    """
)
# PENDING rows of this campaign outside any running send: a resend attempt that died.
_REVERT_DEAD = text(
    "UPDATE deliveries SET outcome = 'UNKNOWN', updated_at = now()"
    " WHERE campaign_id = :campaign AND outcome = 'PENDING'"
)
_SKIP = text(
    """
    UPDATE deliveries d SET outcome = 'SKIPPED', reason = v.reason, updated_at = now()
    FROM unnest(CAST(:ids AS text[]), CAST(:reasons AS text[])) AS v(id, reason)
    WHERE d.id = v.id AND d.outcome = 'UNKNOWN'
    """
)
_RECOUNT = text(
    """
    UPDATE campaigns SET
        unknown_count = (SELECT count(*) FROM deliveries WHERE campaign_id = :c AND outcome = 'UNKNOWN'),
        skipped_count = (SELECT count(*) FROM deliveries WHERE campaign_id = :c AND outcome = 'SKIPPED'),
        updated_at = now()
    WHERE id = :c
    """
)


async def unknown_rows(
    conn: AsyncConnection, *, tenant_id: str, campaign_id: str, after: str | None, limit: int
) -> Sequence[RowMapping]:
    """The next UNKNOWN rows by id: `delivery_id`, `run_id`, `channel`, `id` (the customer id) and
    RECIPIENT_COLUMNS as they are now."""
    params = {"tenant": tenant_id, "campaign": campaign_id, "after": after, "limit": limit}
    return (await conn.execute(_ROWS, params)).mappings().all()


async def revert_dead_claims(conn: AsyncConnection, campaign_id: str) -> None:
    """A dead resend attempt's PENDING rows become UNKNOWN again (maybe sent: never silently)."""
    await conn.execute(_REVERT_DEAD, {"campaign": campaign_id})


async def skip_unknown(conn: AsyncConnection, skips: Sequence[tuple[str, str]]) -> None:
    """(delivery id, reason): UNKNOWN rows whose recipient may not be messaged any more."""
    if skips:
        await conn.execute(_SKIP, {"ids": [s[0] for s in skips], "reasons": [s[1] for s in skips]})


async def recount(conn: AsyncConnection, campaign_id: str) -> None:
    """The campaign row's UNKNOWN and SKIPPED counts after a resend page."""
    await conn.execute(_RECOUNT, {"c": campaign_id})
