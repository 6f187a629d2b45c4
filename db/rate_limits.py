"""The shared rate limiter of provider accounts: token buckets in Postgres that every worker draws on.

An account (`email`, `sms`) has one bucket of its own, refilled at its per-second rate and capped
at a small burst, and a count of what it granted today (UTC) against its per-day limit. Each tenant
sending on it has a lane: a bucket refilled at the tenant's fair share of the account,

    share = rate x weight / (sum of the weights of the lanes that wanted tokens in the last
            ACTIVE_SECONDS, the caller's included)

so tenants sharing an account split it by weight, and a lone tenant gets all of it. A grant takes
tokens from both the lane and the account, so whatever the lanes believe their shares are while
tenants come and go, the grants of all lanes together never exceed rate x elapsed + the account's
burst. Grants are serialised per account by a row lock on the account, so any number of processes
may ask at once without a lost update.
"""

from dataclasses import dataclass
from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# A lane that asked for tokens this recently is sharing the account (the throttle asks at least
# twice a second while it waits, so a waiting tenant never drops out of the split).
ACTIVE_SECONDS = 1.0
# Bucket capacities, in seconds of their rate (at least one token): the most one lane, or all of
# them together, can take at once after a pause.
LANE_BURST_SECONDS = 0.25
ACCOUNT_BURST_SECONDS = 0.25

# Creates the account's row on first use and locks it: every grant on the account waits here, so
# the grant statement below reads lanes nobody else is changing.
_LOCK_ACCOUNT = text(
    "INSERT INTO rate_limit_accounts (account) VALUES (:account)"
    " ON CONFLICT (account) DO UPDATE SET account = EXCLUDED.account"
)

# Refill the account and the caller's lane, grant a batch of `want` tokens (fewer when a bucket
# cannot hold that many, or the day has fewer left) or none, write both back. Granting whole
# batches only keeps a caller that outpaces the rate at one round trip per batch, not per token.
# NULL limits are none: LEAST and GREATEST skip NULLs, so an account without a per-second rate is
# bounded by its day only, and one without a day limit by its rate only.
_GRANT = text(
    """
    WITH p AS MATERIALIZED (
        SELECT CAST(:account AS text) AS account, CAST(:tenant AS text) AS tenant,
               CAST(:want AS float8) AS want, CAST(:weight AS float8) AS weight,
               CAST(:rate AS float8) AS rate, CAST(:per_day AS bigint) AS per_day,
               CAST(:active AS float8) AS active, CAST(:lane_burst AS float8) AS lane_burst,
               CAST(:account_burst AS float8) AS account_burst,
               clock_timestamp() AS now, (clock_timestamp() AT TIME ZONE 'UTC')::date AS today
    ),
    acct AS (
        SELECT CASE WHEN p.rate IS NOT NULL THEN GREATEST(1, p.rate * p.account_burst) END AS cap,
               a.tokens, EXTRACT(EPOCH FROM p.now - a.refilled_at) AS idle,
               CASE WHEN a.day = p.today THEN a.day_granted ELSE 0 END AS day_granted
        FROM rate_limit_accounts a, p WHERE a.account = p.account
    ),
    sharing AS (
        SELECT COALESCE(sum(l.weight), 0) AS weight
        FROM rate_limit_lanes l, p
        WHERE l.account = p.account AND l.tenant_id <> p.tenant
          AND l.last_wanted_at > p.now - make_interval(secs => p.active)
    ),
    share AS (
        SELECT p.rate * p.weight / (p.weight + s.weight) AS rate FROM p, sharing s
    ),
    lane AS (
        SELECT share.rate AS share,
               CASE WHEN share.rate IS NOT NULL THEN GREATEST(1, share.rate * p.lane_burst) END AS cap,
               l.tokens, EXTRACT(EPOCH FROM p.now - l.refilled_at) AS idle
        FROM p CROSS JOIN share
        LEFT JOIN rate_limit_lanes l ON l.account = p.account AND l.tenant_id = p.tenant
    ),
    refilled AS (
        SELECT lane.share, acct.day_granted, p.per_day - acct.day_granted AS day_left,
               LEAST(p.want, floor(lane.cap), floor(acct.cap), p.per_day - acct.day_granted) AS batch,
               CASE WHEN acct.idle IS NULL THEN acct.cap
                    ELSE LEAST(acct.cap, acct.tokens + p.rate * GREATEST(0, acct.idle)) END AS account_tokens,
               CASE WHEN lane.idle IS NULL THEN lane.cap
                    ELSE LEAST(lane.cap, lane.tokens + lane.share * GREATEST(0, lane.idle)) END AS lane_tokens
        FROM p, acct, lane
    ),
    g AS (
        SELECT r.*,
               CASE WHEN r.batch >= 1
                         AND r.batch <= COALESCE(LEAST(r.lane_tokens, r.account_tokens), 'Infinity')
                    THEN r.batch ELSE 0 END::bigint AS n
        FROM refilled r
    ),
    account_written AS (
        UPDATE rate_limit_accounts a
        SET tokens = g.account_tokens - g.n, refilled_at = p.now, day = p.today,
            day_granted = g.day_granted + g.n
        FROM g, p WHERE a.account = p.account
    ),
    lane_written AS (
        INSERT INTO rate_limit_lanes AS l (account, tenant_id, tokens, refilled_at, last_wanted_at, weight)
        SELECT p.account, p.tenant, g.lane_tokens - g.n, p.now, p.now, p.weight FROM g, p
        ON CONFLICT (account, tenant_id) DO UPDATE
        SET tokens = EXCLUDED.tokens, refilled_at = EXCLUDED.refilled_at,
            last_wanted_at = EXCLUDED.last_wanted_at, weight = EXCLUDED.weight
    )
    SELECT g.n AS granted, g.share,
           COALESCE(g.day_left - g.n <= 0, false) AS day_exhausted,
           CASE WHEN g.day_left - g.n <= 0
                THEN EXTRACT(EPOCH FROM (p.today + 1)::timestamp - (p.now AT TIME ZONE 'UTC'))
                ELSE COALESCE(GREATEST(0, (g.batch - (g.lane_tokens - g.n)) / g.share,
                                       (g.batch - (g.account_tokens - g.n)) / p.rate), 0) END AS wait_seconds
    FROM g, p
    """
)

_LANES = text(
    "SELECT tenant_id, tokens, weight, last_wanted_at FROM rate_limit_lanes WHERE account = :account"
    " ORDER BY tenant_id"
)
_GRANTED_ON = text("SELECT day, day_granted FROM rate_limit_accounts WHERE account = :account")


@dataclass(frozen=True)
class Grant:
    """What one ask got: `granted` tokens (0 or the batch asked for), the lane's share of the account
    per second (None: no per-second limit), whether the account's day is used up, and how long until
    a batch could be granted (the next UTC midnight when the day is used up)."""

    granted: int
    share: float | None
    day_exhausted: bool
    wait_seconds: float


@dataclass(frozen=True)
class Lane:
    tenant_id: str
    tokens: float | None
    weight: float


async def grant(
    conn: AsyncConnection,
    *,
    account: str,
    tenant_id: str,
    want: int,
    weight: float,
    per_second: float | None,
    per_day: int | None,
) -> Grant:
    """Take `want` tokens (fewer only when no bucket could ever hold `want`, or the day has fewer
    left) or none for the tenant's lane on the account, in the caller's transaction (committed
    right after: the account's row stays locked until then)."""
    await conn.execute(_LOCK_ACCOUNT, {"account": account})
    row = (
        await conn.execute(
            _GRANT,
            {
                "account": account,
                "tenant": tenant_id,
                "want": want,
                "weight": weight,
                "rate": per_second,
                "per_day": per_day,
                "active": ACTIVE_SECONDS,
                "lane_burst": LANE_BURST_SECONDS,
                "account_burst": ACCOUNT_BURST_SECONDS,
            },
        )
    ).one()
    return Grant(
        granted=int(row.granted),
        share=None if row.share is None else float(row.share),
        day_exhausted=bool(row.day_exhausted),
        wait_seconds=float(row.wait_seconds),
    )


async def lanes(conn: AsyncConnection, account: str) -> list[Lane]:
    """The account's lanes, by tenant."""
    rows = (await conn.execute(_LANES, {"account": account})).all()
    return [Lane(r.tenant_id, r.tokens, r.weight) for r in rows]


async def granted_on(conn: AsyncConnection, account: str) -> tuple[date | None, int]:
    """The UTC day the account last granted on, and how many tokens it granted that day."""
    row = (await conn.execute(_GRANTED_ON, {"account": account})).one_or_none()
    return (None, 0) if row is None else (row.day, int(row.day_granted))
