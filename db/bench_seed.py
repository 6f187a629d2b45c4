"""Bulk seeds and reference queries of the benchmarks (bench/): rows generated in SQL by the
thousand (`INSERT ... SELECT generate_series`), far faster than the API or db.seed can write them,
and the slow scans a benchmark checks or contrasts the real reads with.

Nothing in the service calls these; they live here because every statement of the project does
(docs/data-access.md).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.rollups import roll_up

# ---- api_bench: many campaigns, one with a sent ledger ------------------------------------------


async def seed_listing(conn: AsyncConnection, tenant: str, campaigns: int, deliveries: int) -> str:
    """`campaigns` campaigns of the tenant in every status (ids `campaign_b<10 digits>`), the first
    with a run of `deliveries` SENT deliveries and their SENT interactions, rolled up by the real
    roll-up. Returns the first one's id. They have no workflows: written as confirmed
    (`state_version` 1), so the API's reconcile pass (api.campaign_create) leaves them alone."""
    await conn.execute(
        text(
            """
            INSERT INTO campaigns (id, tenant_id, club_id, name, type, status, channels, created_at,
                                   state_version)
            SELECT 'campaign_b' || lpad(g::text, 10, '0'), :t, 'club_' || (g % 20), 'Campaign ' || g,
                   'ONE_TIME', (ARRAY['DRAFT','SCHEDULED','ACTIVE','COMPLETED'])[1 + g % 4],
                   ARRAY['EMAIL'], now() - make_interval(secs => g), 1
            FROM generate_series(1, :n) g
            """
        ),
        {"t": tenant, "n": campaigns},
    )
    await conn.execute(
        text(
            """
            INSERT INTO campaign_counters (campaign_id, channel, type, recipients, events)
            SELECT 'campaign_b' || lpad(g::text, 10, '0'), 'ALL', k, 100 + g % 50, 100 + g % 50
            FROM generate_series(2, :n) g, unnest(ARRAY['SENT','DELIVERED','OPENED']) k
            """
        ),
        {"n": campaigns},
    )
    sent = "campaign_b" + "1".zfill(10)
    await conn.execute(
        text(
            "INSERT INTO send_runs (id, campaign_id, tenant_id, number, snapshot_complete, target_count)"
            " VALUES (:r, :c, :t, 1, true, :n)"
        ),
        {"r": f"{sent}.r1", "c": sent, "t": tenant, "n": deliveries},
    )
    await conn.execute(
        text(
            """
            INSERT INTO customers (id, tenant_id, external_id, email, first_name)
            SELECT 'customer_b' || g, :t, 'x' || g, 'm' || g || '@bench.example.com', 'F' || g
            FROM generate_series(1, :n) g
            """
        ),
        {"t": tenant, "n": deliveries},
    )
    await conn.execute(
        text(
            """
            INSERT INTO deliveries (id, run_id, campaign_id, tenant_id, customer_id, channel, outcome,
                                    address, sent_at)
            SELECT 'delivery_b' || g, :r, :c, :t, 'customer_b' || g, 'EMAIL', 'SENT',
                   'm' || g || '@bench.example.com', now()
            FROM generate_series(1, :n) g
            """
        ),
        {"r": f"{sent}.r1", "c": sent, "t": tenant, "n": deliveries},
    )
    # SENT interactions counted by the real roll-up: what a send left before migration 0015 (a send
    # now counts itself in its step and writes none); either way the counters hold every SENT.
    await conn.execute(
        text(
            """
            INSERT INTO interactions (id, tenant_id, campaign_id, delivery_id, customer_id, channel,
                                      type, occurred_at, event_key)
            SELECT 'interaction_b' || g, :t, :c, 'delivery_b' || g, 'customer_b' || g, 'EMAIL', 'SENT',
                   now() - interval '1 hour', 'sent:delivery_b' || g
            FROM generate_series(1, :n) g
            """
        ),
        {"t": tenant, "c": sent, "n": deliveries},
    )
    await roll_up(conn, campaign_id=sent)
    await conn.execute(text("ANALYZE"))
    return sent


@dataclass(frozen=True)
class InteractionTotals:
    """What the interactions table says of a campaign, counted the slow way."""

    opened: int
    clicked: int
    events: int


async def interaction_totals(conn: AsyncConnection, campaign_id: str) -> InteractionTotals:
    row = (
        await conn.execute(
            text(
                "SELECT count(DISTINCT customer_id) FILTER (WHERE type = 'OPENED'),"
                " count(DISTINCT customer_id) FILTER (WHERE type = 'CLICKED'),"
                " count(*) FILTER (WHERE type IN ('OPENED', 'CLICKED'))"
                " FROM interactions WHERE campaign_id = :c"
            ),
            {"c": campaign_id},
        )
    ).one()
    return InteractionTotals(opened=row[0], clicked=row[1], events=row[2])


# ---- audience_bench: one big STATIC audience -------------------------------------------------------


def build_big_audience(url: str, n: int) -> None:
    """Tenant `tenant_big`: n customers, the STATIC segment `segment_big` of them all, the EMAIL
    template `template_big` and the ACTIVE campaign `campaign_big` sending it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO customers (id, tenant_id, external_id, email, phone, first_name, attributes)
            SELECT 'customer_' || lpad(g::text, 9, '0'), 'tenant_big', 'ext-' || g,
                   'm' || g || '@big.example.com', '+4420' || lpad(g::text, 9, '0'), 'F' || g,
                   jsonb_build_object('tier', CASE WHEN g %% 2 = 0 THEN 'gold' ELSE 'silver' END)
            FROM generate_series(1, %s) g
            """,
            (n,),
        )
        conn.execute(
            "INSERT INTO segments (id, tenant_id, name, type)"
            " VALUES ('segment_big', 'tenant_big', 'all', 'STATIC')"
        )
        conn.execute(
            "INSERT INTO segment_members (segment_id, customer_id)"
            " SELECT 'segment_big', id FROM customers WHERE tenant_id = 'tenant_big'"
        )
        conn.execute(
            "INSERT INTO templates (id, tenant_id, name, channel, subject, html, text)"
            " VALUES ('template_big', 'tenant_big', 't', 'EMAIL', 'Hi {{ firstName }}',"
            " '<p>Hi {{ firstName }} <a href=\"https://example.com/x\">x</a></p>', 'Hi {{ firstName }}')"
        )
        conn.execute(
            "INSERT INTO campaigns"
            " (id, tenant_id, name, type, status, channels, segment_id, email_template_id) VALUES"
            " ('campaign_big', 'tenant_big', 'big', 'ONE_TIME', 'ACTIVE', ARRAY['EMAIL'],"
            " 'segment_big', 'template_big')"
        )
        conn.execute("ANALYZE")


# ---- rate_limits: a STATIC segment per tenant ------------------------------------------------------


async def seed_static_audience(conn: AsyncConnection, tenant: str, n: int) -> tuple[str, str]:
    """n customers of the tenant (addresses at `<tenant>.example.com`), the STATIC segment
    `segment_<tenant>` of them and the EMAIL template `template_<tenant>`: (segment, template)."""
    tag, domain = tenant, f"{tenant.replace('_', '-')}.example.com"
    await conn.execute(
        text(
            """
            INSERT INTO customers (id, tenant_id, external_id, email, first_name)
            SELECT 'customer_' || :tag || lpad(g::text, 8, '0'), :tag, 'x' || g, g || '@' || :domain,
                   'First' || g
            FROM generate_series(1, :n) g
            """
        ),
        {"tag": tag, "domain": domain, "n": n},
    )
    await conn.execute(
        text("INSERT INTO segments (id, tenant_id, name, type) VALUES (:s, :t, 'all', 'STATIC')"),
        {"s": f"segment_{tag}", "t": tenant},
    )
    await conn.execute(
        text(
            "INSERT INTO segment_members (segment_id, customer_id)"
            " SELECT :s, 'customer_' || :tag || lpad(g::text, 8, '0') FROM generate_series(1, :n) g"
        ),
        {"s": f"segment_{tag}", "tag": tag, "n": n},
    )
    await conn.execute(
        text(
            "INSERT INTO templates (id, tenant_id, name, channel, subject, html, text)"
            " VALUES (:id, :t, 'News', 'EMAIL', 'Hello {{ firstName }}', '<p>Hi {{ firstName }}</p>',"
            " 'Hi {{ firstName }}')"
        ),
        {"id": f"template_{tag}", "t": tenant},
    )
    return f"segment_{tag}", f"template_{tag}"


# ---- stats_bench: one COMPLETED campaign with a million interactions --------------------------------


@dataclass(frozen=True)
class InteractionSlice:
    """One bulk-generated group of interactions: `n` rows of a type on a channel."""

    code: str
    type: str
    channel: str
    n: int
    customer: str  # SQL over g (0..n-1): the customer number
    at: str  # SQL over g and c (customer number): seconds after the campaign start
    metadata: str = "'{}'::jsonb"


@dataclass(frozen=True)
class StatsSeed:
    """The campaign to build: its id, tenant, recipients, when it started and its id prefix."""

    campaign_id: str
    tenant: str
    recipients: int
    start: datetime
    tag: str

    def params(self) -> dict[str, Any]:
        return {
            "c": self.campaign_id,
            "run": f"{self.campaign_id}.r1",
            "t": self.tenant,
            "r": self.recipients,
            "start": self.start,
            "tag": self.tag,
        }


async def seed_stats_campaign(conn: AsyncConnection, seed: StatsSeed, slices: list[InteractionSlice]) -> None:
    """The COMPLETED campaign: its customers, its run, EMAIL deliveries to all and SMS to 40%, and
    the interactions of `slices`, inserted as already rolled up."""
    p = seed.params()
    await conn.execute(text("SET LOCAL synchronous_commit = off"))
    await conn.execute(
        text(
            "INSERT INTO customers (id, tenant_id, external_id, email, first_name, last_name)"
            " SELECT 'customer_' || :tag || lpad(g::text, 9, '0'), :t, :c || '-' || g,"
            "        'member' || g || '@bench.example.com', 'First' || g, 'Last' || g"
            " FROM generate_series(0, :r - 1) g"
        ),
        p,
    )
    await conn.execute(
        text(
            "INSERT INTO campaigns (id, tenant_id, name, type, status, channels, target_count,"
            "  started_at, completed_at, conversion_event, conversion_window_hours)"
            " VALUES (:c, :t, 'Benchmark', 'ONE_TIME', 'COMPLETED', ARRAY['EMAIL','SMS'], :r,"
            "  :start, :start + interval '2 hours', 'booking.created', 72)"
        ),
        p,
    )
    await conn.execute(
        text(
            "INSERT INTO send_runs (id, campaign_id, tenant_id, number, started_at, snapshot_complete,"
            " target_count) VALUES (:run, :c, :t, 1, :start, true, :r)"
        ),
        p,
    )
    for ch, letter, n in (("EMAIL", "e", seed.recipients), ("SMS", "s", int(seed.recipients * 0.4))):
        await conn.execute(
            text(
                "INSERT INTO deliveries (id, run_id, campaign_id, tenant_id, customer_id, channel,"
                "  outcome, sent_at, provider_message_id)"
                f" SELECT 'delivery_{letter}' || :tag || g, :run, :c, :t,"
                f"  'customer_' || :tag || lpad(g::text, 9, '0'), '{ch}', 'SENT',"
                "  :start + make_interval(secs => g * 7200.0 / :r),"
                f"  '<bench-{letter}' || g || '@' || :tag || '>'"
                " FROM generate_series(0, :n - 1) g"
            ),
            {**p, "n": n},
        )
    for s in slices:
        letter = "e" if s.channel == "EMAIL" else "s"
        await conn.execute(
            text(
                "INSERT INTO interactions (id, tenant_id, campaign_id, delivery_id, customer_id,"
                "  channel, type, occurred_at, metadata, rolled_up)"
                f" SELECT 'interaction_{s.code}' || :tag || g, :t, :c, 'delivery_{letter}' || :tag || c,"
                f"  'customer_' || :tag || lpad(c::text, 9, '0'), '{s.channel}', '{s.type}',"
                f"  :start + make_interval(secs => {s.at}), {s.metadata}, true"
                f" FROM generate_series(0, :n - 1) g, LATERAL (SELECT {s.customer} AS c) x"
            ),
            {**p, "n": s.n},
        )


# The roll-ups in bulk: the first interaction of each type per message (per channel) and per
# recipient (ALL); counters of events from the interactions and of distinct recipients from the
# firsts; the timeline of recipients in the UTC hour of their first interaction of each type.
_FIRSTS_PER_CHANNEL = """
    INSERT INTO interaction_firsts (campaign_id, type, channel, customer_id, occurred_at)
    SELECT campaign_id, type, channel, customer_id, min(occurred_at) FROM interactions
    WHERE campaign_id = :c GROUP BY campaign_id, type, channel, customer_id"""
_FIRSTS_ALL = """
    INSERT INTO interaction_firsts (campaign_id, type, channel, customer_id, occurred_at)
    SELECT campaign_id, type, 'ALL', customer_id, min(occurred_at) FROM interactions
    WHERE campaign_id = :c GROUP BY campaign_id, type, customer_id"""
_COUNTERS = """
    INSERT INTO campaign_counters (campaign_id, channel, type, recipients, events)
    SELECT e.campaign_id, e.channel, e.type, COALESCE(f.n, 0), e.n FROM (
        SELECT campaign_id, channel, type, count(*) AS n FROM interactions
        WHERE campaign_id = :c GROUP BY campaign_id, channel, type
        UNION ALL
        SELECT campaign_id, 'ALL', type, count(*) FROM interactions
        WHERE campaign_id = :c GROUP BY campaign_id, type
    ) e LEFT JOIN (
        SELECT campaign_id, channel, type, count(*) AS n FROM interaction_firsts
        WHERE campaign_id = :c GROUP BY campaign_id, channel, type
    ) f USING (campaign_id, channel, type)"""
_HOURLY = """
    INSERT INTO campaign_hourly (campaign_id, hour, type, recipients)
    SELECT campaign_id, date_trunc('hour', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           type, count(*)
    FROM interaction_firsts WHERE campaign_id = :c AND channel = 'ALL'
    GROUP BY 1, 2, 3"""

_CHECK_SQL = """
    SELECT
      (SELECT count(*) FROM interactions WHERE campaign_id = :c),
      (SELECT sum(events) FROM campaign_counters WHERE campaign_id = :c AND channel = 'ALL'),
      (SELECT count(DISTINCT customer_id) FROM interactions WHERE campaign_id = :c AND type = 'OPENED'),
      (SELECT recipients FROM campaign_counters WHERE campaign_id = :c AND channel = 'ALL'
         AND type = 'OPENED'),
      (SELECT sum(recipients) FROM campaign_hourly WHERE campaign_id = :c AND type = 'OPENED')
"""

_NAIVE_SQL = """
    SELECT type, channel, count(*), count(DISTINCT customer_id) FROM interactions
    WHERE campaign_id = :c GROUP BY ROLLUP (type, channel)
"""


async def bulk_roll_up(engine: AsyncEngine, campaign_id: str) -> None:
    """The roll-ups of a campaign seeded as rolled up, computed in bulk with the meaning of
    db.rollups, then checked against a full scan of its interactions."""
    async with engine.begin() as conn:
        await conn.execute(text("SET LOCAL work_mem = '256MB'"))
        await conn.execute(text(_FIRSTS_PER_CHANNEL), {"c": campaign_id})
        await conn.execute(text(_FIRSTS_ALL), {"c": campaign_id})
        await conn.execute(text(_COUNTERS), {"c": campaign_id})
        await conn.execute(text(_HOURLY), {"c": campaign_id})
    async with engine.connect() as conn:
        counted, rolled, openers, opener_counter, hourly = (
            await conn.execute(text(_CHECK_SQL), {"c": campaign_id})
        ).one()
    assert counted == rolled, (counted, rolled)
    assert openers == opener_counter == hourly, (openers, opener_counter, hourly)


async def naive_stats(conn: AsyncConnection, campaign_id: str) -> int:
    """The stats by scanning every interaction of the campaign (the contrast to the roll-ups):
    how many result rows."""
    return len((await conn.execute(text(_NAIVE_SQL), {"c": campaign_id})).all())


# ---- bench.ledger_bench: one campaign and run, and what Postgres says of its own work --------------


async def seed_ledger_run(
    conn: AsyncConnection, *, tenant: str, campaign: str, run: str, targets: int
) -> None:
    """An ACTIVE SMS campaign with one run of `targets` recipients, for ledger steps to write to."""
    await conn.execute(
        text(
            "INSERT INTO campaigns (id, tenant_id, club_id, name, type, status, channels, created_at,"
            " state_version) VALUES (:c, :t, 'club', 'ledger', 'ONE_TIME', 'ACTIVE', ARRAY['SMS'], now(), 1)"
        ),
        {"c": campaign, "t": tenant},
    )
    await conn.execute(
        text(
            "INSERT INTO send_runs (id, campaign_id, tenant_id, number, snapshot_complete, target_count)"
            " VALUES (:r, :c, :t, 1, true, :n)"
        ),
        {"r": run, "c": campaign, "t": tenant, "n": targets},
    )


async def backend_pid(conn: AsyncConnection) -> int:
    """The operating-system process of this connection's Postgres backend (its CPU, in /proc)."""
    return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def set_session(conn: AsyncConnection, name: str, value: str) -> None:
    """A setting for the rest of this connection's session (an experiment's override)."""
    await conn.execute(text("SELECT set_config(:n, :v, false)"), {"n": name, "v": value})


async def wal_position(conn: AsyncConnection) -> str:
    return str((await conn.execute(text("SELECT pg_current_wal_lsn()"))).scalar_one())


_WAL_SINCE = text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), CAST(:p AS pg_lsn))")
_SENT_ROWS = text("SELECT count(*) FROM deliveries WHERE run_id = :r AND outcome = 'SENT'")


async def wal_bytes_since(conn: AsyncConnection, position: str) -> int:
    """WAL the whole server wrote since `position` (a wal_position)."""
    return int((await conn.execute(_WAL_SINCE, {"p": position})).scalar_one())


async def sent_rows(conn: AsyncConnection, run: str) -> int:
    return int((await conn.execute(_SENT_ROWS, {"r": run})).scalar_one())
