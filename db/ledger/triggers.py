"""The queue of a TRIGGERED campaign: `trigger_matches` (README "Campaign types").

`POST /events` routes each new event, in the transaction that stores it, to every ACTIVE (queued,
PENDING) or PAUSED (counted, SKIPPED_PAUSED) TRIGGERED campaign it matches: one row per
(campaign, event id). The campaign's send drains the queue in `seq` order: `take` gives each match
its own EVENT run (id `core.constants.event_run_prefix` + seq) with one recipient, so the ledger's
(run, recipient, channel) key sends each event at most once; `mark_done` closes the matches a
complete page sent; `close_pending` closes what a finished campaign will never send.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from core.constants import event_run_prefix
from db.audience import RECIPIENT_COLUMNS


class IncomingEvent(Protocol):
    """What routing needs of a customer event (the API's `EventCreate` has these fields)."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def customer_id(self) -> str: ...
    @property
    def club_id(self) -> str | None: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Routed:
    """Per new (tenant, event id): how many campaigns queued it and how many skipped it (paused).
    Events already stored (a repeated id) are not in `new`."""

    new: frozenset[tuple[str, str]]
    triggered: Mapping[tuple[str, str], int]
    skipped: Mapping[tuple[str, str], int]


# One statement whatever the batch: store the new events (a known id is ignored), route each to
# the matching campaigns (club, trigger event, every condition key equal as JSON), count per event.
_ROUTE = text(
    """
    WITH v AS (
        SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:ids AS text[]), CAST(:types AS text[]),
                             CAST(:customers AS text[]), CAST(:clubs AS text[]),
                             CAST(:occurred AS timestamptz[]), CAST(:datas AS text[]))
            AS v(tenant_id, id, type, customer_id, club_id, occurred_at, data)
    ), e AS (
        INSERT INTO customer_events (tenant_id, id, type, customer_id, club_id, occurred_at, data)
        SELECT tenant_id, id, type, customer_id, club_id, occurred_at, CAST(data AS jsonb) FROM v
        ON CONFLICT DO NOTHING
        RETURNING tenant_id, id, type, customer_id, club_id, data
    ), m AS (
        INSERT INTO trigger_matches (campaign_id, tenant_id, event_id, customer_id, state)
        SELECT c.id, c.tenant_id, e.id, e.customer_id,
               CASE WHEN c.status = 'ACTIVE' THEN 'PENDING' ELSE 'SKIPPED_PAUSED' END
        FROM e
        JOIN campaigns c
          ON c.tenant_id = e.tenant_id AND c.type = 'TRIGGERED' AND c.trigger_event = e.type
         AND c.status IN ('ACTIVE', 'PAUSED')
         AND (c.club_id IS NULL OR e.club_id IS NULL OR c.club_id = e.club_id)
         AND NOT EXISTS (
             SELECT 1 FROM jsonb_each(CASE WHEN jsonb_typeof(c.trigger_conditions) = 'object'
                                           THEN c.trigger_conditions ELSE '{}'::jsonb END) kv
             WHERE (e.data -> kv.key) IS DISTINCT FROM kv.value
         )
        ON CONFLICT DO NOTHING
        RETURNING tenant_id, event_id, state
    )
    SELECT e.tenant_id, e.id,
           (SELECT count(*) FROM m WHERE m.tenant_id = e.tenant_id AND m.event_id = e.id
                                     AND m.state = 'PENDING') AS triggered,
           (SELECT count(*) FROM m WHERE m.tenant_id = e.tenant_id AND m.event_id = e.id
                                     AND m.state = 'SKIPPED_PAUSED') AS skipped
    FROM e
    """
)
_CONTROL_RUN = text(
    "INSERT INTO send_runs (id, campaign_id, tenant_id, number, kind, snapshot_complete)"
    " VALUES (:id, :c, :t, 0, 'TRIGGER', true) ON CONFLICT (id) DO NOTHING"
)
_ANY_PENDING = text("SELECT 1 FROM trigger_matches WHERE campaign_id = :c AND state = 'PENDING' LIMIT 1")
# Take the oldest pending matches, give each its EVENT run and recipient row, and return them with
# what a send needs of the customer.
_TAKE = text(
    f"""
    WITH m AS (
        SELECT seq, event_id, customer_id, CAST(:run_prefix AS text) || seq AS run_id
        FROM trigger_matches
        WHERE campaign_id = :c AND state = 'PENDING'
        ORDER BY seq
        LIMIT :limit
    ), runs AS (
        INSERT INTO send_runs (id, campaign_id, tenant_id, number, kind, source_id,
                               snapshot_complete, target_count)
        SELECT run_id, :c, :t, 0, 'EVENT', event_id, true, 1 FROM m
        ON CONFLICT (id) DO NOTHING
    ), recipients AS (
        INSERT INTO run_recipients (run_id, customer_id)
        SELECT run_id, customer_id FROM m
        ON CONFLICT DO NOTHING
    )
    SELECT m.seq, m.run_id, m.customer_id AS id, {RECIPIENT_COLUMNS}
    FROM m LEFT JOIN customers c ON c.id = m.customer_id AND c.tenant_id = :t
    ORDER BY m.seq
    """
)
_DONE = text(
    """
    WITH done AS (
        UPDATE trigger_matches SET state = 'DONE' WHERE seq = ANY(:seqs) AND state = 'PENDING'
        RETURNING seq
    )
    UPDATE send_runs SET completed_at = coalesce(completed_at, now())
    WHERE id = ANY(:runs)
    """
)
_CLOSE = text("UPDATE trigger_matches SET state = 'CLOSED' WHERE campaign_id = :c AND state = 'PENDING'")
_QUEUE_STATS = text(
    """
    SELECT count(*) AS matched,
           count(*) FILTER (WHERE state = 'PENDING') AS queued,
           count(*) FILTER (WHERE state = 'DONE') AS processed,
           count(*) FILTER (WHERE state = 'SKIPPED_PAUSED') AS skipped_while_paused,
           count(*) FILTER (WHERE state = 'CLOSED') AS closed
    FROM trigger_matches WHERE campaign_id = :c
    """
)


async def store_and_route(conn: AsyncConnection, events: Sequence[IncomingEvent]) -> Routed:
    """Store the events and queue each new one for the campaigns it matches (module docstring)."""
    rows = await conn.execute(
        _ROUTE,
        {
            "tenants": [e.tenant_id for e in events],
            "ids": [e.id for e in events],
            "types": [e.type for e in events],
            "customers": [e.customer_id for e in events],
            "clubs": [e.club_id for e in events],
            "occurred": [e.occurred_at for e in events],
            "datas": [json.dumps(e.data) for e in events],
        },
    )
    new: set[tuple[str, str]] = set()
    triggered: dict[tuple[str, str], int] = {}
    skipped: dict[tuple[str, str], int] = {}
    for tenant, event_id, n_triggered, n_skipped in rows:
        new.add((tenant, event_id))
        triggered[(tenant, event_id)] = int(n_triggered)
        skipped[(tenant, event_id)] = int(n_skipped)
    return Routed(new=frozenset(new), triggered=triggered, skipped=skipped)


async def ensure_control_run(conn: AsyncConnection, campaign_id: str, tenant_id: str, run_id: str) -> None:
    """The run that carries the campaign's halt epoch (core.constants.trigger_control_run_id), so
    pause and cancel reach a page mid-send as for a segment run; written once."""
    await conn.execute(_CONTROL_RUN, {"id": run_id, "c": campaign_id, "t": tenant_id})


async def any_pending(conn: AsyncConnection, campaign_id: str) -> bool:
    return (await conn.execute(_ANY_PENDING, {"c": campaign_id})).first() is not None


async def take(conn: AsyncConnection, campaign_id: str, tenant_id: str, limit: int) -> Sequence[RowMapping]:
    """The oldest `limit` pending matches, each given its EVENT run and recipient row: `seq`,
    `run_id`, `id` (the customer id) and db.audience.RECIPIENT_COLUMNS (NULL `present`: the
    customer is gone). A match stays PENDING until `mark_done`, so a page that dies is taken again
    and the ledger keeps it from being sent twice."""
    params = {"c": campaign_id, "t": tenant_id, "limit": limit, "run_prefix": event_run_prefix(campaign_id)}
    return (await conn.execute(_TAKE, params)).mappings().all()


async def mark_done(conn: AsyncConnection, seqs: Sequence[int], runs: Sequence[str]) -> None:
    """The matches a complete page sent are DONE and their EVENT runs finished."""
    await conn.execute(_DONE, {"seqs": list(seqs), "runs": list(runs)})


async def close_pending(conn: AsyncConnection, campaign_id: str) -> None:
    """A finished campaign sends nothing more: its queued matches are CLOSED, not left pending."""
    await conn.execute(_CLOSE, {"c": campaign_id})


@dataclass(frozen=True)
class QueueStats:
    """Events routed to a TRIGGERED campaign, by what became of them."""

    matched: int
    queued: int
    processed: int
    skipped_while_paused: int
    closed: int


async def queue_stats(conn: AsyncConnection, campaign_id: str) -> QueueStats:
    row = (await conn.execute(_QUEUE_STATS, {"c": campaign_id})).one()
    return QueueStats(*(int(n) for n in row))
