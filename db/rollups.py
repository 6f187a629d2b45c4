"""Interactions and their roll-ups, kept in step so that stats never scan interactions.

Each interaction is counted exactly once: `roll_up` flips `rolled_up` on the rows it counts
(UPDATE ... WHERE NOT rolled_up RETURNING), inserts first-of-a-kind rows with ON CONFLICT DO
NOTHING (which yields the distinct-recipient counts and the hourly timeline) and adds the deltas
to the counters. A single interaction costs O(1) statements; a page of sends costs one pass.

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

from core.ids import new_id

ALL = "ALL"  # channel key of the per-recipient (cross-channel) roll-ups


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
    ON CONFLICT (event_key) DO NOTHING
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


_CLAIM_BY_IDS = text(
    """
    UPDATE interactions SET rolled_up = true
    WHERE id = ANY(:ids) AND NOT rolled_up
    RETURNING campaign_id, customer_id, channel, type, occurred_at
    """
)
_CLAIM_BY_CAMPAIGN = text(
    """
    UPDATE interactions SET rolled_up = true
    WHERE campaign_id = :campaign_id AND NOT rolled_up
    RETURNING campaign_id, customer_id, channel, type, occurred_at
    """
)
_CLAIM_PENDING = text(
    """
    UPDATE interactions SET rolled_up = true
    WHERE id IN (
        SELECT id FROM interactions WHERE NOT rolled_up
        LIMIT :limit FOR UPDATE SKIP LOCKED
    ) AND NOT rolled_up
    RETURNING campaign_id, customer_id, channel, type, occurred_at
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
    conn: AsyncConnection, *, ids: Sequence[str] | None = None, campaign_id: str | None = None
) -> int:
    """Count not-yet-counted interactions (by id, or all of a campaign). Returns rows counted."""
    if ids is not None:
        rows = (await conn.execute(_CLAIM_BY_IDS, {"ids": list(ids)})).all()
    else:
        rows = (await conn.execute(_CLAIM_BY_CAMPAIGN, {"campaign_id": campaign_id})).all()
    if not rows:
        return 0
    await _apply(conn, [(r[0], r[1], r[2], r[3], r[4]) for r in rows])
    return len(rows)


async def roll_up_pending(conn: AsyncConnection, limit: int = 5000) -> int | None:
    """Count up to `limit` not-yet-counted interactions of any campaign, in the caller's
    transaction. None: another process holds the roll-up now (nothing done); else rows counted."""
    if not (await conn.execute(_TRY_LOCK, {"key": ROLL_UP_LOCK})).scalar_one():
        return None
    rows = (await conn.execute(_CLAIM_PENDING, {"limit": limit})).all()
    if rows:
        await _apply(conn, [(r[0], r[1], r[2], r[3], r[4]) for r in rows])
    return len(rows)


def _hour(ts: datetime) -> datetime:
    """The UTC hour of an instant, whatever the database session's time zone (half-hour zones)."""
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def _apply(conn: AsyncConnection, rows: Iterable[tuple[str, str, str, str, datetime]]) -> None:
    events: Counter[tuple[str, str, str]] = Counter()
    firsts: dict[tuple[str, str, str, str], datetime] = {}
    for campaign_id, customer_id, channel, type_, at in rows:
        events[(campaign_id, channel, type_)] += 1
        events[(campaign_id, ALL, type_)] += 1
        for ch in (channel, ALL):
            key = (campaign_id, type_, ch, customer_id)
            if key not in firsts or at < firsts[key]:
                firsts[key] = at
    keys = sorted(firsts)
    inserted = (
        await conn.execute(
            _FIRSTS,
            {
                "campaign_ids": [k[0] for k in keys],
                "types": [k[1] for k in keys],
                "channels": [k[2] for k in keys],
                "customer_ids": [k[3] for k in keys],
                "times": [firsts[k] for k in keys],
            },
        )
    ).all()
    recipients: Counter[tuple[str, str, str]] = Counter()
    hourly: Counter[tuple[str, datetime, str]] = Counter()
    for campaign_id, type_, channel, at in inserted:
        recipients[(campaign_id, channel, type_)] += 1
        if channel == ALL:
            hourly[(campaign_id, _hour(at), type_)] += 1
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


async def counters_for(conn: AsyncConnection, campaign_id: str) -> dict[tuple[str, str], tuple[int, int]]:
    """{(channel|ALL, type): (recipients, events)} of one campaign."""
    rows = await conn.execute(
        text("SELECT channel, type, recipients, events FROM campaign_counters WHERE campaign_id = :c"),
        {"c": campaign_id},
    )
    return {(r[0], r[1]): (int(r[2]), int(r[3])) for r in rows}
