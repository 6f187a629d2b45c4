"""The send path's statements on the ledger: a page's recipients and rows, claims, answers.

README "Delivery guarantees (the ledger)" gives the rules these statements keep:
- a message is claimed (a PENDING row) right before a provider slot takes it, and answered right
  after; every claim and answer statement is idempotent, so a wave retried on a fresh connection
  after a lost commit never applies twice;
- a dead attempt's PENDING rows become UNKNOWN (never resent by themselves), except SMS rows when
  the provider deduplicates on the idempotency key (they are posted again with the same key).

Every function takes the caller's connection and never commits: the caller owns the transaction.
The hot statements (`write_step`) take arrays (`unnest`), so one statement carries a whole group
commit and its text never changes (psycopg prepares it after a few executions).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import InteractionType
from db.audience import RECIPIENT_COLUMNS
from db.driver import driver_of
from db.ledger.outcomes import MessageOutcome, mark_orphans_unknown
from db.rollups import ALL

# ---- a page of a run's recipients -------------------------------------------------------------------

# The page's bounds are repeated on `c.id`: they change no row (c.id = rr.customer_id), but without
# them an analyzed plan merge-joins the page with the customers' primary key read from its start,
# so the page at the end of a run of 100,000 read 97,000 customers for its 7,000 (EXPLAIN ANALYZE).
_PAGE = text(
    f"""
    SELECT rr.run_id, rr.customer_id AS id, {RECIPIENT_COLUMNS}
    FROM run_recipients rr
    LEFT JOIN customers c ON c.id = rr.customer_id AND c.tenant_id = :tenant
         AND (CAST(:after AS text) IS NULL OR c.id > :after)
         AND (CAST(:upto AS text) IS NULL OR c.id <= :upto)
    WHERE rr.run_id = :run AND (CAST(:after AS text) IS NULL OR rr.customer_id > :after)
      AND (CAST(:upto AS text) IS NULL OR rr.customer_id <= :upto)
    ORDER BY rr.customer_id
    LIMIT :limit
    """
)


async def run_page(
    conn: AsyncConnection, *, tenant_id: str, run_id: str, after: str | None, upto: str | None, limit: int
) -> Sequence[RowMapping]:
    """Recipients of a run in (after, upto], by customer id: `run_id`, `id` and RECIPIENT_COLUMNS."""
    params = {"tenant": tenant_id, "run": run_id, "after": after, "upto": upto, "limit": limit}
    return (await conn.execute(_PAGE, params)).mappings().all()


@dataclass(frozen=True)
class PageBounds:
    """What a page covers in the ledger: its runs (a TRIGGERED page holds one run per event) and
    its customer range, exact for a one-run page."""

    runs: list[str]
    first: str
    last: str

    def params(self) -> dict[str, Any]:
        return {"runs": self.runs, "first": self.first, "last": self.last}


@dataclass(frozen=True)
class ExistingRow:
    """A ledger row already written for one of the page's messages."""

    id: str
    run_id: str
    customer_id: str
    channel: str
    outcome: str


_EXISTING = text(
    "SELECT id, run_id, customer_id, channel, outcome FROM deliveries"
    " WHERE run_id = ANY(:runs) AND customer_id BETWEEN :first AND :last"
)


async def settle_orphans(conn: AsyncConnection, bounds: PageBounds, *, keep_sms: bool) -> list[ExistingRow]:
    """Turn a dead attempt's in-flight rows of the page into UNKNOWN (maybe delivered, so never
    resent by themselves), then return every row the page already has. With `keep_sms` (an
    idempotent SMS provider) in-flight SMS rows stay PENDING: the caller posts them again under
    the same id, which the provider recognises."""
    await mark_orphans_unknown(
        conn, runs=bounds.runs, first=bounds.first, last=bounds.last, keep_sms=keep_sms
    )
    rows = await conn.execute(_EXISTING, bounds.params())
    return [ExistingRow(r[0], r[1], r[2], r[3], r[4]) for r in rows]


_PAGE_COUNTS = text(
    "SELECT outcome, count(*) FROM deliveries"
    " WHERE run_id = ANY(:runs) AND customer_id BETWEEN :first AND :last GROUP BY outcome"
)


async def page_outcomes(conn: AsyncConnection, bounds: PageBounds) -> dict[str, int]:
    """{outcome: rows} of the page."""
    return {r[0]: int(r[1]) for r in await conn.execute(_PAGE_COUNTS, bounds.params())}


# ---- rows written once: skipped and unrenderable messages --------------------------------------------


@dataclass(frozen=True)
class FinalRow(MessageOutcome):
    """A message decided without a provider call (SKIPPED by a gate, FAILED to render)."""

    id: str
    run_id: str


_INSERT_FINALS = text(
    """
    INSERT INTO deliveries (id, run_id, campaign_id, tenant_id, customer_id, channel, outcome,
                            reason, detail, address)
    SELECT v.id, v.run, :campaign, :tenant, v.customer, v.channel, v.outcome, v.reason, v.detail,
           v.address
    FROM unnest(CAST(:ids AS text[]), CAST(:runs AS text[]), CAST(:customers AS text[]),
                CAST(:channels AS text[]), CAST(:outcomes AS text[]), CAST(:reasons AS text[]),
                CAST(:details AS text[]), CAST(:addresses AS text[]))
         AS v(id, run, customer, channel, outcome, reason, detail, address)
    ON CONFLICT (run_id, customer_id, channel) DO NOTHING
    """
)


async def insert_finals(
    conn: AsyncConnection, *, campaign_id: str, tenant_id: str, rows: Sequence[FinalRow]
) -> None:
    """Write decided rows once (a retried page finds them and leaves them)."""
    if not rows:
        return
    await conn.execute(
        _INSERT_FINALS,
        {
            "campaign": campaign_id,
            "tenant": tenant_id,
            "ids": [r.id for r in rows],
            "runs": [r.run_id for r in rows],
            "customers": [r.customer_id for r in rows],
            "channels": [r.channel for r in rows],
            "outcomes": [r.outcome for r in rows],
            "reasons": [r.reason for r in rows],
            "details": [r.detail for r in rows],
            "addresses": [r.address for r in rows],
        },
    )


# ---- the hot path: one group commit of answers, releases and claims ----------------------------------


@dataclass(frozen=True)
class Claim:
    """A message about to be handed to a provider slot, under the ledger id it is sent with."""

    id: str
    run_id: str
    customer_id: str
    channel: str
    address: str | None
    variant: str | None = None  # the A/B variant it carries (core.experiments)


@dataclass(frozen=True)
class AnswerRow:
    """A provider's answer to a claimed message. `interaction_type` names what it counts as: None
    counts nothing; SENT is counted, and the row itself is its interaction (no interaction row);
    any other type logs an interaction row under `interaction_id` (None for the others)."""

    id: str
    outcome: str
    reason: str | None
    detail: str | None
    sent_at: datetime | None
    provider_message_id: str | None
    interaction_id: str | None
    interaction_type: str | None


# The two step statements are in the driver's own parameter style: they run on the psycopg
# connection itself (`write_step`), and their arrays go in binary (%(name)b): psycopg builds the
# text form of 16 arrays element by element in Python, 380 µs per step of 16 answers and 16
# claims, against 128 µs in binary (measured on this box). They share their first part: answers
# mark only PENDING rows (a replayed commit changes nothing) and log their interactions.
# A SENT is counted right here (docs/architecture.md, "Counting sends"): its recipient's
# first-of-a-kind row under ALL is inserted, and one `counter_deltas` row per channel carries the
# events and the new recipients (an append: concurrent commits of one campaign never wait on a
# counter row). Its interaction is the ledger row itself (SENT, at `sent_at`), which is what the
# interactions page lists for it (db.stats): no interaction row is written for it, which was a
# quarter of the step's Postgres CPU and 40 % of its WAL (docs/performance-log.md, "2026-12-06 (2)").
# For the same reason its `message.sent` event (docs/outbound-webhooks.md) is written to the
# outbox here, as the interactions trigger writes every other one, and only for a tenant with an
# endpoint; the event names the message (`interactionId` is its id, as on the interactions page).
# Only rows this statement moved out of PENDING are counted, so a replayed commit counts nothing
# twice. Other answers' interactions (a hard bounce, a failure) are logged here and left to the
# roll-ups as before. The answered rows are also named by `id = ANY(...)`, so the plan kept for a
# page (`prepare_writer`) can read them by primary key whatever it estimated for the join with `a`.
_ANSWERS = """
    WITH a AS (
        SELECT * FROM unnest(CAST(%(a_ids)b AS text[]), CAST(%(a_outcomes)b AS text[]),
                             CAST(%(a_reasons)b AS text[]), CAST(%(a_details)b AS text[]),
                             CAST(%(a_sent_ats)b AS timestamptz[]), CAST(%(a_pmids)b AS text[]),
                             CAST(%(a_iids)b AS text[]), CAST(%(a_itypes)b AS text[]))
            AS v(id, outcome, reason, detail, sent_at, pmid, iid, itype)
    ), marked AS (
        UPDATE deliveries
        SET outcome = a.outcome, reason = a.reason, detail = a.detail, sent_at = a.sent_at,
            provider_message_id = a.pmid, updated_at = now()
        FROM a WHERE deliveries.id = a.id AND deliveries.id = ANY(CAST(%(a_ids)b AS text[]))
          AND deliveries.outcome = 'PENDING'
        RETURNING deliveries.id, deliveries.tenant_id, deliveries.campaign_id,
                  deliveries.customer_id, deliveries.channel, a.iid, a.itype
    ), logged AS (
        INSERT INTO interactions (id, tenant_id, campaign_id, delivery_id, customer_id, channel,
                                  type, occurred_at, metadata, rolled_up)
        SELECT m.iid, m.tenant_id, m.campaign_id, m.id, m.customer_id, m.channel, m.itype, %(at)b,
               '{}'::jsonb, false
        FROM marked m WHERE m.itype IS NOT NULL AND m.itype <> '{sent}'
    ), announced AS (
        INSERT INTO webhook_outbox (tenant_id, campaign_id, type, payload)
        SELECT m.tenant_id, m.campaign_id, 'message.sent',
               jsonb_build_object('interactionId', m.id, 'deliveryId', m.id, 'customerId', m.customer_id,
                                  'channel', m.channel, 'occurredAt', %(at)b, 'metadata', '{}'::jsonb)
        FROM marked m
        WHERE m.itype = '{sent}' AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.tenant_id = %(tenant)b)
        ORDER BY m.id
    ), firsts AS (
        INSERT INTO interaction_firsts (campaign_id, type, channel, customer_id, occurred_at)
        SELECT DISTINCT ON (m.customer_id) %(campaign)b, '{sent}', '{all}', m.customer_id, %(at)b
        FROM marked m WHERE m.itype = '{sent}'
        ON CONFLICT DO NOTHING
        RETURNING 1
    ), counted AS (
        INSERT INTO counter_deltas (campaign_id, channel, type, hour, recipients, events)
        SELECT %(campaign)b, m.channel, '{sent}', date_bin('1 hour', %(at)b, TIMESTAMPTZ 'epoch'), 0, count(*)
        FROM marked m WHERE m.itype = '{sent}' GROUP BY m.channel
        UNION ALL
        SELECT %(campaign)b, '{all}', '{sent}', date_bin('1 hour', %(at)b, TIMESTAMPTZ 'epoch'),
               (SELECT count(*) FROM firsts), count(*)
        FROM marked m WHERE m.itype = '{sent}' HAVING count(*) > 0
    )""".replace("{sent}", InteractionType.SENT.value).replace("{all}", ALL)
# New rows: releases drop claims whose message never left the client; claims insert PENDING rows,
# and a row this same claim already wrote (a commit whose reply was lost) is returned again.
_STEP_NEW = (
    _ANSWERS
    + """, released AS (
        DELETE FROM deliveries WHERE id = ANY(CAST(%(released)b AS text[])) AND outcome = 'PENDING'
    )
    INSERT INTO deliveries (id, run_id, campaign_id, tenant_id, customer_id, channel, outcome,
                            address, claimed_at, variant)
    SELECT v.id, v.run, %(campaign)b, %(tenant)b, v.customer, v.channel, 'PENDING', v.address, %(at)b,
           v.variant
    FROM unnest(CAST(%(c_ids)b AS text[]), CAST(%(c_runs)b AS text[]), CAST(%(c_customers)b AS text[]),
                CAST(%(c_channels)b AS text[]), CAST(%(c_addresses)b AS text[]),
                CAST(%(c_variants)b AS text[]))
         AS v(id, run, customer, channel, address, variant)
    ON CONFLICT (run_id, customer_id, channel) DO UPDATE SET claimed_at = deliveries.claimed_at
        WHERE deliveries.id = excluded.id AND deliveries.outcome = 'PENDING'
    RETURNING id
    """
)
# Rows that exist already (an operator's resend of UNKNOWN rows): a claim flips UNKNOWN to
# PENDING and stamps `claimed_at` with this step's time, so a replayed commit finds its own claims
# again (PENDING with that stamp) and no dead attempt's; a release flips back.
_STEP_EXISTING = (
    _ANSWERS
    + """, released AS (
        UPDATE deliveries SET outcome = 'UNKNOWN', updated_at = now()
        WHERE id = ANY(CAST(%(released)b AS text[])) AND outcome = 'PENDING'
    )
    UPDATE deliveries SET outcome = 'PENDING', claimed_at = %(at)b, updated_at = now()
    WHERE id = ANY(CAST(%(c_ids)b AS text[])) AND campaign_id = %(campaign)b AND tenant_id = %(tenant)b
      AND (outcome = 'UNKNOWN' OR (outcome = 'PENDING' AND claimed_at = %(at)b))
    RETURNING id
    """
)


# How the step is planned (`prepare_writer`). Left to itself, Postgres plans a prepared statement
# for its arguments at every execution (a group commit's step: ~0.6 ms, 22 % of the step's time in
# the running system, pg_stat_statements) unless a generic plan looks as cheap, which for steps of
# a few messages it never does. A generic plan is kept for the rest of the session, though, and one
# made while `deliveries` was small (a new database) read it sequentially, so on a connection kept
# from then on each step cost more than the one before (measured, 4,800 messages took 1.2 s, then
# 2.1, 2.5, 3.0, 3.7 s). So a page's writer asks for a generic plan on a connection of its own,
# which it discards when the page ends (activities/send/writer.py): the step is planned once per
# page, from the table as it is then, which for any ledger but a new database's first page means
# by primary key, and no plan or setting outlives the page. The first page of a new database
# plans on a small table and scans at most what that page adds to it. In the running system
# (pg_stat_statements, 20,000 SMS) the step's planning went from 1,407-1,514 ms to 21-29 ms;
# bench.ledger_bench, whose steps of 16 Postgres already planned generically, moved too much on
# this box to show a difference. A transaction on a pooled connection (a hard bounce, rare) plans
# its step for its own arrays. tests/test_ledger_plans.py reads the plan the writer's session keeps.
WRITER_SESSION = "plan_cache_mode", "force_generic_plan"
_CUSTOM_PLAN = "SET LOCAL plan_cache_mode = force_custom_plan"


async def prepare_writer(conn: AsyncConnection, *, transaction: bool = False) -> None:
    """Make `conn` fit to run `write_step` for a page: for its session (a connection the page
    discards at its end, never a pooled one), or with `transaction` for the caller's open
    transaction only."""
    driver = await driver_of(conn)
    if transaction:
        await driver.execute(_CUSTOM_PLAN)
        return
    name, value = WRITER_SESSION
    await driver.execute("SELECT set_config(%s, %s, false)", (name, value))


async def write_step(
    conn: AsyncConnection,
    *,
    campaign_id: str,
    tenant_id: str,
    answers: Sequence[AnswerRow],
    released: Sequence[str],
    claims: Sequence[Claim],
    at: datetime,
    existing_rows: bool = False,
) -> set[str]:
    """Record answers, drop released claims and claim new messages, in one statement; returns the
    ids claimed (a message another attempt holds is not). `at` must be this step's own time and
    the same when the step is replayed: it stamps the claims and the interactions.
    `existing_rows`: the claimed rows exist already as UNKNOWN (a resend) instead of being new."""
    params: dict[str, Any] = {
        "campaign": campaign_id,
        "tenant": tenant_id,
        "at": at,
        "a_ids": [a.id for a in answers],
        "a_outcomes": [a.outcome for a in answers],
        "a_reasons": [a.reason for a in answers],
        "a_details": [a.detail for a in answers],
        "a_sent_ats": [a.sent_at for a in answers],
        "a_pmids": [a.provider_message_id for a in answers],
        "a_iids": [a.interaction_id for a in answers],
        "a_itypes": [a.interaction_type for a in answers],
        "released": list(released),
        "c_ids": [c.id for c in claims],
    }
    if not existing_rows:
        params.update(
            c_runs=[c.run_id for c in claims],
            c_customers=[c.customer_id for c in claims],
            c_channels=[c.channel for c in claims],
            c_addresses=[c.address for c in claims],
            c_variants=[c.variant for c in claims],
        )
    # The hot statement goes straight to the driver (psycopg), in the caller's transaction (or
    # autocommit): SQLAlchemy's execution layer cost more than the statement's own client side.
    driver = await driver_of(conn)
    cursor = await driver.execute(_STEP_EXISTING if existing_rows else _STEP_NEW, params, prepare=True)
    return {str(r[0]) for r in await cursor.fetchall()}
