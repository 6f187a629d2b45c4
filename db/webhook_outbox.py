"""The webhook outbox: facts waiting for tenants' endpoints, and the events endpoints gave up on.

Rows are written by triggers (migration 0011) in the very transaction that records the fact, so
an event exists exactly when its fact does. Its id (a bigserial) is the event id receivers dedupe
on.

Reading in id order alone would lose events: ids are taken when a row is inserted, but rows
become visible when their transaction commits, so a reader that has passed id 51 may later see
id 50 commit. Every row therefore also holds its transaction id (`xid`, a 64-bit xid8 that never
wraps), and an endpoint reads in `(xid, id)` order only rows whose transaction is older than the
oldest one still running (`pg_snapshot_xmin`): no row can ever appear behind a position read that
way. Within one transaction rows keep their id order; a campaign's status changes are separate
transactions one after the other, so they arrive in order too. The cost: a long writing
transaction anywhere in the database delays delivery (not correctness) until it ends.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class Position:
    """A place in the outbox: `(xid, id)`, xid as the decimal text of an xid8."""

    xid: str
    id: int


@dataclass(frozen=True)
class OutboxEvent:
    id: int
    tenant_id: str
    campaign_id: str | None
    type: str
    created_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class Batch:
    """The next events for an endpoint and the position to move to once they are delivered."""

    events: list[OutboxEvent]
    next_position: Position | None  # None: nothing new at all


_NEXT = text(
    """
    WITH h AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon),
    top AS (
        SELECT o.xid, o.id FROM webhook_outbox o, h
        WHERE o.tenant_id = :tenant AND (o.xid, o.id) > (CAST(:xid AS xid8), :id) AND o.xid < h.horizon
        ORDER BY o.xid DESC, o.id DESC LIMIT 1
    ), batch AS (
        SELECT o.xid, o.id, o.tenant_id, o.campaign_id, o.type, o.created_at, o.payload
        FROM webhook_outbox o, h
        WHERE o.tenant_id = :tenant AND (o.xid, o.id) > (CAST(:xid AS xid8), :id) AND o.xid < h.horizon
          AND o.type = ANY(CAST(:types AS text[]))
        ORDER BY o.xid, o.id LIMIT :n
    )
    SELECT t.xid::text AS top_xid, t.id AS top_id, b.xid::text AS xid, b.id, b.tenant_id,
           b.campaign_id, b.type, b.created_at, b.payload
    FROM top t LEFT JOIN batch b ON true
    ORDER BY b.xid, b.id
    """
)


async def next_batch(
    conn: AsyncConnection, tenant_id: str, types: Sequence[str], after: Position, limit: int
) -> Batch:
    """Up to `limit` events of `types` after `after`, in delivery order, and where the position
    goes once they are delivered: the last event when the batch is full, else the last row read
    of any type (so events of other types are passed over once, not read again and again)."""
    params = {"tenant": tenant_id, "xid": after.xid, "id": after.id, "types": list(types), "n": limit}
    rows = (await conn.execute(_NEXT, params)).mappings().all()
    if not rows:
        return Batch([], None)
    events = [
        OutboxEvent(r["id"], r["tenant_id"], r["campaign_id"], r["type"], r["created_at"], r["payload"])
        for r in rows
        if r["id"] is not None
    ]
    if len(events) == limit:
        last = rows[-1]
        return Batch(events, Position(last["xid"], int(last["id"])))
    return Batch(events, Position(rows[0]["top_xid"], int(rows[0]["top_id"])))


_PENDING = text(
    """
    SELECT count(*) FROM webhook_outbox
    WHERE tenant_id = :tenant AND (xid, id) > (CAST(:xid AS xid8), :id) AND type = ANY(CAST(:types AS text[]))
    """
)


async def pending_count(conn: AsyncConnection, tenant_id: str, types: Sequence[str], after: Position) -> int:
    """Events of `types` past the endpoint's position (including ones still being committed)."""
    params = {"tenant": tenant_id, "xid": after.xid, "id": after.id, "types": list(types)}
    return int((await conn.execute(_PENDING, params)).scalar_one())


# ---- dead letters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    """An event as it was (and will be) sent: `event` is its JSON object."""

    event_id: int
    event: dict[str, Any]
    occurred_at: datetime


_BURY = text(
    """
    INSERT INTO webhook_dead_letters (endpoint_id, event_id, event, occurred_at, error)
    SELECT :endpoint, v.id, CAST(v.event AS jsonb), v.at, :error
    FROM unnest(CAST(:ids AS bigint[]), CAST(:events AS text[]), CAST(:ats AS timestamptz[]))
         AS v(id, event, at)
    ON CONFLICT ON CONSTRAINT pk_webhook_dead_letters DO UPDATE
        SET dead_at = now(), error = excluded.error, replay_requested_at = NULL, replayed_at = NULL
    """
)


async def bury(conn: AsyncConnection, endpoint_id: str, letters: Sequence[DeadLetter], error: str) -> None:
    """Keep events the endpoint failed to take for too long (a failed replay goes back here)."""
    if not letters:
        return
    params = {
        "endpoint": endpoint_id,
        "ids": [d.event_id for d in letters],
        "events": [json.dumps(d.event) for d in letters],
        "ats": [d.occurred_at for d in letters],
        "error": error[:500],
    }
    await conn.execute(_BURY, params)


@dataclass(frozen=True)
class ReplaySelection:
    """Which dead letters to send again: by event id, or by when the event happened."""

    event_ids: Sequence[int] | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None


_REQUEST_REPLAY = text(
    """
    UPDATE webhook_dead_letters SET replay_requested_at = now(), replayed_at = NULL
    WHERE endpoint_id = :endpoint
      AND (CAST(:ids AS bigint[]) IS NULL OR event_id = ANY(CAST(:ids AS bigint[])))
      AND (CAST(:since AS timestamptz) IS NULL OR occurred_at >= CAST(:since AS timestamptz))
      AND (CAST(:until AS timestamptz) IS NULL OR occurred_at < CAST(:until AS timestamptz))
    """
)


async def request_replay(conn: AsyncConnection, endpoint_id: str, selection: ReplaySelection) -> int:
    """Queue the selected dead letters (replayed before or not) for delivery; how many."""
    params = {
        "endpoint": endpoint_id,
        "ids": None if selection.event_ids is None else list(selection.event_ids),
        "since": selection.occurred_from,
        "until": selection.occurred_to,
    }
    return int((await conn.execute(_REQUEST_REPLAY, params)).rowcount)


_REPLAYS = text(
    """
    SELECT event_id, event, occurred_at FROM webhook_dead_letters
    WHERE endpoint_id = :endpoint AND replay_requested_at IS NOT NULL AND replayed_at IS NULL
    ORDER BY event_id LIMIT :n
    """
)


async def replay_batch(conn: AsyncConnection, endpoint_id: str, limit: int) -> list[DeadLetter]:
    """The next dead letters queued for replay, in event order."""
    rows = (await conn.execute(_REPLAYS, {"endpoint": endpoint_id, "n": limit})).mappings()
    return [DeadLetter(int(r["event_id"]), r["event"], r["occurred_at"]) for r in rows]


_REPLAYED = text(
    """
    UPDATE webhook_dead_letters SET replayed_at = :at
    WHERE endpoint_id = :endpoint AND event_id = ANY(CAST(:ids AS bigint[]))
    """
)


async def mark_replayed(
    conn: AsyncConnection, endpoint_id: str, event_ids: Sequence[int], at: datetime
) -> None:
    await conn.execute(_REPLAYED, {"endpoint": endpoint_id, "ids": list(event_ids), "at": at})


@dataclass(frozen=True)
class DeadCounts:
    dead: int  # not (successfully) replayed
    replaying: int  # of those, queued for replay


_DEAD_COUNTS = text(
    """
    SELECT count(*) FILTER (WHERE replayed_at IS NULL),
           count(*) FILTER (WHERE replayed_at IS NULL AND replay_requested_at IS NOT NULL)
    FROM webhook_dead_letters WHERE endpoint_id = :endpoint
    """
)


async def dead_counts(conn: AsyncConnection, endpoint_id: str) -> DeadCounts:
    dead, replaying = (await conn.execute(_DEAD_COUNTS, {"endpoint": endpoint_id})).one()
    return DeadCounts(int(dead), int(replaying))


_PRUNE = text(
    """
    DELETE FROM webhook_outbox WHERE id IN (
        SELECT id FROM webhook_outbox WHERE created_at < :before ORDER BY created_at LIMIT :n
        FOR UPDATE SKIP LOCKED
    )
    """
)


async def prune_outbox(conn: AsyncConnection, before: datetime, limit: int) -> int:
    """Forget events older than the retention (dead letters keep their own copy); rows removed."""
    return int((await conn.execute(_PRUNE, {"before": before, "n": limit})).rowcount)
