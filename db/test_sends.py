"""The record of test sends (README "Test sends"): apart from the ledger, counted in no stats."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class TestSendRow:
    __test__ = False  # not a pytest class
    id: str
    tenant_id: str
    campaign_id: str
    channel: str
    address: str
    outcome: str
    detail: str | None
    created_by: str | None


_RECORD = text(
    "INSERT INTO test_sends (id, tenant_id, campaign_id, channel, address, outcome, detail, created_by)"
    " VALUES (:id, :tenant_id, :campaign_id, :channel, :address, :outcome, :detail, :created_by)"
)


async def record(conn: AsyncConnection, rows: Sequence[TestSendRow]) -> None:
    if rows:
        await conn.execute(_RECORD, [r.__dict__ for r in rows])


async def sent_recently(conn: AsyncConnection, tenant_id: str, within: timedelta) -> int:
    """Test messages the tenant sent in the last `within` (its rate limit)."""
    row = await conn.execute(
        text(
            "SELECT count(*) FROM test_sends"
            " WHERE tenant_id = :t AND created_at > now() - CAST(:w AS interval)"
        ),
        {"t": tenant_id, "w": f"{int(within.total_seconds())} seconds"},
    )
    return int(row.scalar_one())


_CLAIM_SEEDS = text(
    """
    INSERT INTO test_sends (id, tenant_id, campaign_id, channel, address, outcome, kind, variant)
    SELECT 'seed_' || md5(:c || chr(31) || :ch || chr(31) || :v || chr(31) || a), :t, :c, :ch, a,
           'PENDING', 'SEED', :v
    FROM unnest(CAST(:addresses AS text[])) AS a
    ON CONFLICT DO NOTHING
    RETURNING address
    """
)


async def claim_seed_copies(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    campaign_id: str,
    channel: str,
    variant: str | None,
    addresses: Sequence[str],
) -> list[str]:
    """The seed addresses that have not had this campaign's copy on this channel (and A/B
    variant), now claimed (one copy each, whichever page gets here first; a crash after the
    claim loses the copy)."""
    params = {
        "t": tenant_id,
        "c": campaign_id,
        "ch": channel,
        "v": variant or "",
        "addresses": list(addresses),
    }
    return [r[0] for r in await conn.execute(_CLAIM_SEEDS, params)]


_SETTLE_SEED = text(
    "UPDATE test_sends SET outcome = :o, detail = :d"
    " WHERE campaign_id = :c AND channel = :ch AND variant = :v AND address = :a AND kind = 'SEED'"
)


async def settle_seed_copy(
    conn: AsyncConnection,
    campaign_id: str,
    channel: str,
    variant: str | None,
    address: str,
    sent: bool,
    detail: str,
) -> None:
    params = {
        "o": "SENT" if sent else "FAILED",
        "d": detail[:500] or None,
        "c": campaign_id,
        "ch": channel,
        "v": variant or "",
        "a": address,
    }
    await conn.execute(_SETTLE_SEED, params)
