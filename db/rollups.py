"""Interactions and their roll-ups, kept in step so that stats never scan interactions.

Each interaction is counted exactly once: `roll_up` flips `rolled_up` on the rows it counts
(UPDATE ... WHERE NOT rolled_up RETURNING), inserts first-of-a-kind rows with ON CONFLICT DO
NOTHING (which yields the distinct-recipient counts and the hourly timeline) and adds the deltas
to the counters. A single interaction costs O(1) statements; a page of sends costs one pass.

Opens and clicks that are not a machine's (core.engagement) are also counted under
`OPENED_HUMAN` / `CLICKED_HUMAN`, with first-of-a-kind rows and hourly buckets of their own.

Sends are counted by the ledger's step statement as it records them (db.ledger.sends): their
interactions are born counted, and the step appends its tallies to `counter_deltas`, which every
roll-up here folds into the counters (and deletes) in the same pass as the interactions it counts.

The send path rolls up its own rows in the transaction that wrote them. Tracking only appends
(db.interactions) and leaves its rows to `roll_up_pending`, which the API runs in the background
(api.rollup): one pass at a time across all API processes (a transaction-scoped advisory lock),
taking rows another transaction is counting right now (`SKIP LOCKED`) never, so it neither
waits on nor deadlocks with the send path's roll-ups. The reads add the rows no roll-up has
reached yet (db.stats), so a count is exact whatever the roll-up's lag.
"""

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.engagement import LINK_BURST
from core.ids import new_id

ALL = "ALL"  # channel key of the per-recipient (cross-channel) roll-ups
# Human opens and clicks are counted again under these types (README "Honest engagement"): the
# machine figures are the differences, so human + machine = all by construction.
HUMAN_TYPES = {"OPENED": "OPENED_HUMAN", "CLICKED": "CLICKED_HUMAN"}
MACHINE = "machine"


@dataclass(frozen=True)
class NewInteraction:
    tenant_id: str
    campaign_id: str
    customer_id: str
    channel: str
    type: str
    occurred_at: datetime
    delivery_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    event_key: str | None = None


_INSERT = text(
    """
    INSERT INTO interactions
        (id, tenant_id, campaign_id, delivery_id, customer_id, channel, type, occurred_at,
         metadata, event_key)
    VALUES (:id, :tenant_id, :campaign_id, :delivery_id, :customer_id, :channel, :type,
            :occurred_at, CAST(:metadata AS jsonb), :event_key)
    ON CONFLICT (event_key) WHERE event_key IS NOT NULL DO NOTHING
    RETURNING id
    """
)


async def insert_interaction(conn: AsyncConnection, item: NewInteraction) -> str | None:
    """Insert one interaction; None when its `event_key` was seen before (idempotent webhooks)."""
    row = (
        await conn.execute(
            _INSERT,
            {
                "id": new_id("interaction"),
                "tenant_id": item.tenant_id,
                "campaign_id": item.campaign_id,
                "delivery_id": item.delivery_id,
                "customer_id": item.customer_id,
                "channel": item.channel,
                "type": item.type,
                "occurred_at": item.occurred_at,
                "metadata": json.dumps(item.metadata),
                "event_key": item.event_key,
            },
        )
    ).first()
    return None if row is None else str(row[0])


async def record(conn: AsyncConnection, item: NewInteraction) -> str | None:
    """Insert and roll up one interaction in the caller's transaction."""
    interaction_id = await insert_interaction(conn, item)
    if interaction_id is not None:
        await roll_up(conn, ids=[interaction_id])
    return interaction_id


_RETURNING = "RETURNING campaign_id, customer_id, channel, type, occurred_at, engagement_class"
_CLAIM_BY_IDS = text(
    f"""
    UPDATE interactions SET rolled_up = true
    WHERE id = ANY(:ids) AND NOT rolled_up
    {_RETURNING}
    """
)
# `settle`: a click the tracking endpoint classified (its class is set) younger than that many
# seconds waits for a later pass, so the link-burst rule (core.engagement rule 3) can still
# reclassify it (0: count everything now). The figures stay exact: the reads add what waits.
_SETTLED = """(type <> 'CLICKED' OR engagement_class IS NULL
               OR occurred_at <= now() - make_interval(secs => CAST(:settle AS double precision)))"""
_CLAIM_BY_CAMPAIGN = text(
    f"""
    UPDATE interactions SET rolled_up = true
    WHERE campaign_id = :campaign_id AND NOT rolled_up AND {_SETTLED}
    {_RETURNING}
    """
)
# The batch is picked once (a MATERIALIZED CTE), then its rows are flipped by primary key. As
# `WHERE id IN (subquery)`, a generic plan of the prepared statement could rescan the pick for each
# row of the table: a burst's pass then ran into the statement timeout again and again.
_CLAIM_PENDING = text(
    f"""
    WITH picked AS MATERIALIZED (
        SELECT id FROM interactions WHERE NOT rolled_up AND {_SETTLED}
        LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    UPDATE interactions SET rolled_up = true
    FROM picked WHERE interactions.id = picked.id
    {_RETURNING}
    """
)
# The ledger's tallies of sends (see the module's docstring), taken as they are folded: by
# campaign (the page roll-up), or any campaign's (the background roll-up; rows another roll-up is
# folding right now are skipped, as for interactions).
_DELTA_COLUMNS = "campaign_id, channel, type, hour, recipients, events"
_TAKE_DELTAS_OF_CAMPAIGN = text(
    f"DELETE FROM counter_deltas WHERE campaign_id = :c RETURNING {_DELTA_COLUMNS}"
)
_TAKE_DELTAS = text(
    f"""
    WITH picked AS MATERIALIZED (
        SELECT id FROM counter_deltas LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    DELETE FROM counter_deltas d USING picked WHERE d.id = picked.id
    RETURNING {", ".join("d." + c for c in _DELTA_COLUMNS.split(", "))}
    """
)
# Any constant both API processes agree on: the background roll-up's lock (pg_advisory locks).
ROLL_UP_LOCK = 0x726F6C6C7570  # "rollup"
_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")
_FIRSTS = text(
    """
    INSERT INTO interaction_firsts (campaign_id, type, channel, customer_id, occurred_at)
    SELECT * FROM unnest(CAST(:campaign_ids AS text[]), CAST(:types AS text[]),
                         CAST(:channels AS text[]), CAST(:customer_ids AS text[]),
                         CAST(:times AS timestamptz[]))
    ON CONFLICT DO NOTHING
    RETURNING campaign_id, type, channel, occurred_at
    """
)
_COUNTERS = text(
    """
    INSERT INTO campaign_counters AS c (campaign_id, channel, type, recipients, events)
    SELECT * FROM unnest(CAST(:campaign_ids AS text[]), CAST(:channels AS text[]),
                         CAST(:types AS text[]), CAST(:recipients AS bigint[]),
                         CAST(:events AS bigint[]))
    ON CONFLICT (campaign_id, channel, type) DO UPDATE
    SET recipients = c.recipients + excluded.recipients, events = c.events + excluded.events
    """
)
_HOURLY = text(
    """
    INSERT INTO campaign_hourly AS h (campaign_id, hour, type, recipients)
    SELECT * FROM unnest(CAST(:campaign_ids AS text[]), CAST(:hours AS timestamptz[]),
                         CAST(:types AS text[]), CAST(:recipients AS bigint[]))
    ON CONFLICT (campaign_id, hour, type) DO UPDATE
    SET recipients = h.recipients + excluded.recipients
    """
)


async def roll_up(
    conn: AsyncConnection,
    *,
    ids: Sequence[str] | None = None,
    campaign_id: str | None = None,
    settle_seconds: float = LINK_BURST.total_seconds(),
) -> int:
    """Count not-yet-counted interactions (by id, or all of a campaign). Returns rows counted.

    By campaign (the send path's page roll-up, the final count), tracked clicks younger than
    `settle_seconds` are left to the background roll-up (see `_SETTLED`)."""
    deltas: list[_Delta] = []
    if ids is not None:
        rows = (await conn.execute(_CLAIM_BY_IDS, {"ids": list(ids)})).all()
    else:
        params = {"campaign_id": campaign_id, "settle": settle_seconds}
        rows = (await conn.execute(_CLAIM_BY_CAMPAIGN, params)).all()
        deltas = [_Delta(*r) for r in await conn.execute(_TAKE_DELTAS_OF_CAMPAIGN, {"c": campaign_id})]
    if rows or deltas:
        await _apply(conn, [_Claimed(*r) for r in rows], deltas)
    return len(rows)


async def roll_up_pending(
    conn: AsyncConnection, limit: int = 5000, settle_seconds: float = 0.0
) -> int | None:
    """Count up to `limit` not-yet-counted interactions of any campaign, in the caller's
    transaction; clicks younger than `settle_seconds` wait. None: another process holds the
    roll-up now (nothing done); else rows counted."""
    if not (await conn.execute(_TRY_LOCK, {"key": ROLL_UP_LOCK})).scalar_one():
        return None
    rows = (await conn.execute(_CLAIM_PENDING, {"limit": limit, "settle": settle_seconds})).all()
    deltas = [_Delta(*r) for r in await conn.execute(_TAKE_DELTAS, {"limit": limit})]
    if rows or deltas:
        await _apply(conn, [_Claimed(*r) for r in rows], deltas)
    return len(rows)


def _hour(ts: datetime) -> datetime:
    """The UTC hour of an instant, whatever the database session's time zone (half-hour zones)."""
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class _Claimed:
    """An interaction a roll-up claimed, as its claim statement returns it."""

    campaign_id: str
    customer_id: str
    channel: str
    type: str
    occurred_at: datetime
    engagement_class: str | None

    def counted_types(self) -> tuple[str, ...]:
        """Its own type, and the human type for a person's open or click (NULL class: recorded
        before classification or by a provider's webhook, counted as human as it always was)."""
        if self.type in HUMAN_TYPES and self.engagement_class != MACHINE:
            return (self.type, HUMAN_TYPES[self.type])
        return (self.type,)


@dataclass(frozen=True)
class _Delta:
    """A tally the ledger's step appended (sends it recorded), as a roll-up takes it."""

    campaign_id: str
    channel: str
    type: str
    hour: datetime
    recipients: int
    events: int


_Events = Counter[tuple[str, str, str]]
_Firsts = dict[tuple[str, str, str, str], datetime]


# SENT is counted per channel by its events alone: each message has one ledger row and one SENT,
# and byChannel counts messages (db.stats), so a per-channel first-of-a-kind row per message would
# be written and never read. Its distinct recipients are kept under ALL (top-level counts, timeline).
_EVENTS_ONLY_PER_CHANNEL = frozenset({"SENT"})


def _tally(rows: Iterable[_Claimed]) -> tuple[_Events, _Firsts]:
    """Events per (campaign, channel|ALL, type) and the earliest instant per first-of-a-kind key
    (campaign, type, channel|ALL, customer); SENT has first-of-a-kind keys under ALL only."""
    events: _Events = Counter()
    firsts: _Firsts = {}
    for row in rows:
        for type_ in row.counted_types():
            for ch in (row.channel, ALL):
                events[(row.campaign_id, ch, type_)] += 1
                if ch != ALL and type_ in _EVENTS_ONLY_PER_CHANNEL:
                    continue
                key = (row.campaign_id, type_, ch, row.customer_id)
                if key not in firsts or row.occurred_at < firsts[key]:
                    firsts[key] = row.occurred_at
    return events, firsts


async def _insert_firsts(conn: AsyncConnection, firsts: _Firsts) -> Sequence[Any]:
    """Insert the first-of-a-kind rows; those that were new (campaign, type, channel, at)."""
    keys = sorted(firsts)
    params = {
        "campaign_ids": [k[0] for k in keys],
        "types": [k[1] for k in keys],
        "channels": [k[2] for k in keys],
        "customer_ids": [k[3] for k in keys],
        "times": [firsts[k] for k in keys],
    }
    return (await conn.execute(_FIRSTS, params)).all()


async def _apply(conn: AsyncConnection, rows: Sequence[_Claimed], deltas: Sequence[_Delta] = ()) -> None:
    events, firsts = _tally(rows)
    inserted = await _insert_firsts(conn, firsts) if firsts else []
    recipients: Counter[tuple[str, str, str]] = Counter()
    hourly: Counter[tuple[str, datetime, str]] = Counter()
    for campaign_id, type_, channel, at in inserted:
        recipients[(campaign_id, channel, type_)] += 1
        if channel == ALL:
            hourly[(campaign_id, _hour(at), type_)] += 1
    for d in deltas:  # their first-of-a-kind rows are in already (the step inserted them)
        events[(d.campaign_id, d.channel, d.type)] += d.events
        recipients[(d.campaign_id, d.channel, d.type)] += d.recipients
        if d.channel == ALL and d.recipients:
            hourly[(d.campaign_id, _hour(d.hour), d.type)] += d.recipients
    # Sorted keys: concurrent roll-ups lock counter rows in the same order (no deadlocks).
    ckeys = sorted(events)
    await conn.execute(
        _COUNTERS,
        {
            "campaign_ids": [k[0] for k in ckeys],
            "channels": [k[1] for k in ckeys],
            "types": [k[2] for k in ckeys],
            "recipients": [recipients.get(k, 0) for k in ckeys],
            "events": [events[k] for k in ckeys],
        },
    )
    if hourly:
        hkeys = sorted(hourly)
        await conn.execute(
            _HOURLY,
            {
                "campaign_ids": [k[0] for k in hkeys],
                "hours": [k[1] for k in hkeys],
                "types": [k[2] for k in hkeys],
                "recipients": [hourly[k] for k in hkeys],
            },
        )


# The counters and the tallies not folded yet, from one snapshot.
_COUNTERS_OF = text(
    """
    SELECT channel, type, sum(recipients), sum(events)
    FROM (SELECT channel, type, recipients, events FROM campaign_counters WHERE campaign_id = :c
          UNION ALL
          SELECT channel, type, recipients, events FROM counter_deltas WHERE campaign_id = :c) k
    GROUP BY channel, type
    """
)


async def counters_for(conn: AsyncConnection, campaign_id: str) -> dict[tuple[str, str], tuple[int, int]]:
    """{(channel|ALL, type): (recipients, events)} of one campaign, its sends' tallies included
    (interactions no roll-up has reached are not: db.stats counts those)."""
    rows = await conn.execute(_COUNTERS_OF, {"c": campaign_id})
    return {(r[0], r[1]): (int(r[2]), int(r[3])) for r in rows}
