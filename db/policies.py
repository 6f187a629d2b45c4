"""Sending policies in the database: the tenant's policy, a campaign's overrides, the frequency
holds that make caps safe between campaigns, and the messages quiet hours hold back.

README "Sending policies" gives the rules:
- a frequency cap counts the messages that passed the cap gate (`frequency_holds`), per person and
  channel, across the tenant's campaigns; the check and the hold happen under a per-person
  advisory lock in the caller's transaction, so two campaigns racing for one person serialise and
  cannot both pass a cap of one; a retried page finds its own holds and is let through again;
- a message quiet hours hold back waits in `held_messages` until its window ends; a later sweep of
  the campaign takes the held messages that are due (marking them with its number, so a retried
  sweep takes the same ones) and sends them through the same pipeline.

Functions take the caller's connection and never commit.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import bindparam

from core.experiments import ABTest
from core.policy import CampaignPolicy, DeliverAt, Effective, TenantPolicy, effective
from db.audience import RECIPIENT_COLUMNS
from db.driver import driver_of

# ---- the tenant's policy and a campaign's overrides ---------------------------------------------


_TENANT_POLICY = "SELECT policy FROM tenant_policies WHERE tenant_id = %(t)s"


async def tenant_policy(conn: AsyncConnection, tenant_id: str, defaults: TenantPolicy) -> TenantPolicy:
    """The tenant's stored policy, or `defaults` when it never set one."""
    driver = await driver_of(conn)  # read by /stats on every poll: prepared, straight to psycopg
    async with driver.cursor() as cursor:
        await cursor.execute(_TENANT_POLICY, {"t": tenant_id}, prepare=True)
        row = await cursor.fetchone()
    return defaults if row is None else TenantPolicy.model_validate(row[0])


_PUT_POLICY = text(
    """
    INSERT INTO tenant_policies (tenant_id, policy, updated_at) VALUES (:t, :p, now())
    ON CONFLICT (tenant_id) DO UPDATE SET policy = EXCLUDED.policy, updated_at = now()
    """
).bindparams(bindparam("p", type_=JSONB))


async def put_tenant_policy(conn: AsyncConnection, tenant_id: str, policy: TenantPolicy) -> None:
    """Replace the tenant's policy whole."""
    await conn.execute(_PUT_POLICY, {"t": tenant_id, "p": policy.model_dump(mode="json", by_alias=True)})


@dataclass(frozen=True)
class CampaignPolicyRow:
    policy: CampaignPolicy
    timezone: str
    deliver_at: DeliverAt | None
    holdout_percent: float
    ab_test: ABTest | None
    ab_winner: str | None


async def campaign_policy(
    conn: AsyncConnection, campaign_id: str, tenant_id: str
) -> CampaignPolicyRow | None:
    """A campaign's overrides, timezone and local delivery (None: no such campaign in the tenant)."""
    row = (
        await conn.execute(
            text(
                "SELECT policy, timezone, deliver_at, holdout_percent, ab_test, ab_winner FROM campaigns"
                " WHERE id = :c AND tenant_id = :t"
            ),
            {"c": campaign_id, "t": tenant_id},
        )
    ).first()
    if row is None:
        return None
    policy = CampaignPolicy() if row[0] is None else CampaignPolicy.model_validate(row[0])
    deliver_at = None if row[2] is None else DeliverAt.model_validate(row[2])
    ab_test = None if row[4] is None else ABTest.model_validate(row[4])
    return CampaignPolicyRow(policy, row[1] or "UTC", deliver_at, float(row[3] or 0), ab_test, row[5])


async def effective_policy(
    conn: AsyncConnection, campaign_id: str, tenant_id: str, defaults: TenantPolicy
) -> Effective:
    """What a campaign's sends apply: the tenant's policy (or `defaults`) folded with the
    campaign's overrides, zone, local delivery, holdout and A/B test (core.policy.effective).
    The one place both the send path and the estimate build it."""
    tenant = await tenant_policy(conn, tenant_id, defaults)
    campaign = await campaign_policy(conn, campaign_id, tenant_id)
    if campaign is None:
        return effective(tenant, CampaignPolicy())
    folded = effective(
        tenant, campaign.policy, campaign.timezone, campaign.deliver_at, campaign.holdout_percent
    )
    return folded.model_copy(update={"ab_test": campaign.ab_test, "ab_winner": campaign.ab_winner})


@dataclass(frozen=True)
class Wave:
    """Messages waiting for one instant (recipient-local delivery or a quiet window's end)."""

    at: datetime
    held: int


async def waves(conn: AsyncConnection, campaign_id: str) -> list[Wave]:
    """The campaign's waves not sent yet, in time order."""
    rows = await conn.execute(
        text(
            "SELECT until, count(*) FROM held_messages WHERE campaign_id = :c AND sweep IS NULL"
            " GROUP BY until ORDER BY until"
        ),
        {"c": campaign_id},
    )
    return [Wave(r[0], int(r[1])) for r in rows]


# ---- frequency holds ----------------------------------------------------------------------------

_LOCK_PEOPLE = text(
    """
    SELECT count(pg_advisory_xact_lock(k)) FROM (
        SELECT DISTINCT hashtextextended(:t || chr(31) || :ch || chr(31) || id, 7) AS k
        FROM unnest(CAST(:ids AS text[])) AS id ORDER BY k
    ) s
    """
)

_HOLD = text(
    """
    WITH earlier AS (
        SELECT customer_id, count(*) AS n, min(held_at) AS oldest FROM frequency_holds
        WHERE tenant_id = :t AND channel = :ch AND customer_id = ANY(CAST(:ids AS text[]))
          AND held_at > CAST(:now AS timestamptz) - CAST(:window AS interval) AND run_id <> :run
        GROUP BY customer_id
    ), held AS (
        INSERT INTO frequency_holds (run_id, customer_id, channel, tenant_id, held_at)
        SELECT :run, id, :ch, :t, :now FROM unnest(CAST(:ids AS text[])) AS id
        WHERE COALESCE((SELECT n FROM earlier e WHERE e.customer_id = id), 0) < :max
        ON CONFLICT DO NOTHING
    )
    SELECT customer_id, oldest FROM earlier WHERE n >= :max
    """
)


async def hold_for_cap(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    channel: str,
    run_id: str,
    customer_ids: Sequence[str],
    max_messages: int,
    window: timedelta,
    now: datetime,
) -> dict[str, datetime]:
    """Count each person's messages in the window ending `now` (the page's clock) and hold one
    more for those under the cap; returns the people at the cap with their oldest counted
    message (the cap frees a place when it leaves the window). Locks each person until the
    caller's transaction ends, in one order (by lock key), so concurrent pages never deadlock."""
    if not customer_ids:
        return {}
    ids = sorted(set(customer_ids))
    params = {"t": tenant_id, "ch": channel, "ids": ids}
    await conn.execute(_LOCK_PEOPLE, params)
    seconds = f"{int(window.total_seconds())} seconds"
    rows = await conn.execute(
        _HOLD, {**params, "run": run_id, "max": max_messages, "window": seconds, "now": now}
    )
    return {r[0]: r[1] for r in rows}


# ---- messages held by quiet hours ------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    run_id: str
    customer_id: str
    channel: str
    until: datetime


_HOLD_MESSAGES = text(
    """
    INSERT INTO held_messages (run_id, customer_id, channel, campaign_id, tenant_id, until)
    SELECT r, c, ch, :campaign, :t, u
    FROM unnest(CAST(:runs AS text[]), CAST(:customers AS text[]), CAST(:channels AS text[]),
                CAST(:untils AS timestamptz[])) AS h(r, c, ch, u)
    ON CONFLICT (run_id, customer_id, channel) DO UPDATE SET until = EXCLUDED.until, sweep = NULL
    """
)


async def hold_messages(
    conn: AsyncConnection, *, campaign_id: str, tenant_id: str, held: Sequence[Held]
) -> None:
    """Keep messages back until their quiet window ends (again, for one a sweep found still quiet)."""
    if not held:
        return
    await conn.execute(
        _HOLD_MESSAGES,
        {
            "campaign": campaign_id,
            "t": tenant_id,
            "runs": [h.run_id for h in held],
            "customers": [h.customer_id for h in held],
            "channels": [h.channel for h in held],
            "untils": [h.until for h in held],
        },
    )


_TAKE_DUE = text(
    f"""
    WITH picked AS (
        SELECT run_id, customer_id, channel FROM held_messages
        WHERE campaign_id = :campaign AND tenant_id = :t
          AND (sweep = :sweep OR (sweep IS NULL AND until <= :now))
        ORDER BY sweep IS NULL, run_id, customer_id, channel
        LIMIT :limit
        FOR UPDATE
    ), due AS (
        UPDATE held_messages h SET sweep = :sweep FROM picked p
        WHERE h.run_id = p.run_id AND h.customer_id = p.customer_id AND h.channel = p.channel
        RETURNING h.run_id, h.customer_id, h.channel
    )
    SELECT due.run_id, due.customer_id AS id, due.channel AS held_channel, {RECIPIENT_COLUMNS}
    FROM due LEFT JOIN customers c ON c.id = due.customer_id AND c.tenant_id = :t
    ORDER BY due.run_id, due.customer_id, due.channel
    """
)


async def take_due(
    conn: AsyncConnection, *, campaign_id: str, tenant_id: str, sweep: int, now: datetime, limit: int
) -> Sequence[RowMapping]:
    """Up to `limit` held messages due at `now`, marked as taken by `sweep`; a retried sweep takes
    the ones it marked first: `run_id`, `id`, `held_channel` and RECIPIENT_COLUMNS each."""
    params = {"campaign": campaign_id, "t": tenant_id, "sweep": sweep, "now": now, "limit": limit}
    return (await conn.execute(_TAKE_DUE, params)).mappings().all()


async def make_due(conn: AsyncConnection, campaign_id: str, now: datetime) -> None:
    """Every held message of the campaign is due at `now` (an A/B test's winner is known): the
    sweep passes them through the gates again, so one still inside quiet hours is held anew."""
    await conn.execute(
        text(
            "UPDATE held_messages SET until = :now WHERE campaign_id = :c AND sweep IS NULL AND until > :now"
        ),
        {"c": campaign_id, "now": now},
    )


async def next_due(conn: AsyncConnection, campaign_id: str) -> datetime | None:
    """When the campaign's earliest held message that no sweep has taken is due."""
    row = (
        await conn.execute(
            text("SELECT min(until) FROM held_messages WHERE campaign_id = :c AND sweep IS NULL"),
            {"c": campaign_id},
        )
    ).first()
    return None if row is None else row[0]


async def held_counts(conn: AsyncConnection, campaign_id: str) -> dict[str, int]:
    """Messages of the campaign still held back, per channel."""
    rows = await conn.execute(
        text(
            "SELECT channel, count(*) FROM held_messages"
            " WHERE campaign_id = :c AND sweep IS NULL GROUP BY channel"
        ),
        {"c": campaign_id},
    )
    return {r[0]: int(r[1]) for r in rows}


_SWEEP_OUTCOMES = text(
    """
    SELECT d.outcome, count(*) FROM held_messages h
    JOIN deliveries d ON d.run_id = h.run_id AND d.customer_id = h.customer_id AND d.channel = h.channel
    WHERE h.campaign_id = :c AND h.sweep = :sweep
    GROUP BY d.outcome
    """
)


async def sweep_outcomes(conn: AsyncConnection, campaign_id: str, sweep: int) -> dict[str, int]:
    """Ledger outcomes of the messages a sweep took (what it decided, counted once per retry)."""
    rows = await conn.execute(_SWEEP_OUTCOMES, {"c": campaign_id, "sweep": sweep})
    return {r[0]: int(r[1]) for r in rows}
