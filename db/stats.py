"""Read side of campaign stats: /stats and the interactions page, without scanning interactions.

- `campaign_stats` reads the roll-ups (`campaign_counters`: at most 3 channel keys x 8
  types; `campaign_hourly`: one row per hour and type) plus the interactions no roll-up has
  counted yet (tracking leaves its rows to the background roll-up, api.rollup), in ONE
  statement, so the counters and the timeline come from the same snapshot, the buckets always
  sum to the top-level counts, and the figures are exact however far the roll-up lags. Its cost
  does not depend on how many interactions a campaign has, only on that small backlog.
- `count_interactions` is exact without counting a campaign's interactions: every rolled-up
  interaction is in `campaign_counters.events` (db.rollups keeps that invariant in the same
  transaction that flips `rolled_up`), so total = counters + the few not-yet-rolled-up rows,
  which the partial index `ix_interactions_not_rolled` finds directly. Only a `customerId`
  filter (a handful of rows, with its own index) counts rows.
- `page_interactions` is newest first, ordered by (occurred_at, id) on the indexes of
  `interactions` and, for SENT, of the ledger (a message's SENT is its `deliveries` row), and joins
  the customer after the page is cut.
- `run_stats` and `trigger_stats` read the ledger (db.ledger) for the per-run and event-queue
  sections of /stats.
"""

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import InteractionType as T
from db.campaign_counts import RecipientCounts, counts_from
from db.ledger.reads import recent_runs
from db.ledger.triggers import queue_stats
from db.rollups import ALL, HUMAN_TYPES, MACHINE

OPENED_HUMAN, CLICKED_HUMAN = HUMAN_TYPES[T.OPENED.value], HUMAN_TYPES[T.CLICKED.value]
TIMELINE_TYPES = (T.SENT.value, T.OPENED.value, OPENED_HUMAN)
MESSAGE_TYPES = frozenset({T.SENT.value, T.DELIVERED.value, T.BOUNCED.value, T.FAILED.value})


@dataclass(frozen=True)
class HourBucket:
    hour: datetime
    sent: int
    opened: int
    human_opened: int = 0


@dataclass(frozen=True)
class HumanCounts:
    """Distinct recipients with at least one open (click) that was not a machine's."""

    opened: int = 0
    clicked: int = 0


@dataclass(frozen=True)
class CampaignStats:
    """Top-level distinct recipients, per-channel distinct recipients (= messages of a run), timeline."""

    totals: RecipientCounts
    by_channel: dict[str, RecipientCounts]
    timeline: list[HourBucket]
    human: HumanCounts = HumanCounts()
    human_by_channel: dict[str, HumanCounts] = field(default_factory=dict)
    rollup_pending: int = 0  # interactions counted from their rows: not rolled up when read
    as_of: datetime | None = None  # when the database read them


# The counters, the timeline, the sends' tallies not folded into them yet (db.rollups: each adds
# its events, and its new recipients to the hour of its step), and what the interactions not
# rolled up yet add to both, read in ONE
# statement (one snapshot): a roll-up committing meanwhile can neither be counted twice nor missed.
# A pending open or click that is not a machine's also counts under its human type (db.rollups).
# A pending row adds an event to its (channel, type) and to (ALL, type); it adds a recipient when
# neither interaction_firsts nor an earlier pending row has that (type, channel, customer), exactly
# as db.rollups would count it; the timeline takes the hour of that first pending row.
_STATS = text(
    """
    WITH pending AS (
        SELECT k.channel, t.type, i.customer_id, i.occurred_at
        FROM interactions i
        CROSS JOIN LATERAL (VALUES (i.channel), (:all)) AS k(channel)
        CROSS JOIN LATERAL (
            VALUES (i.type),
                   (CASE WHEN i.engagement_class IS DISTINCT FROM :machine
                         THEN CAST(:human_types AS jsonb)->>i.type END)
        ) AS t(type)
        WHERE i.campaign_id = :c AND NOT i.rolled_up AND t.type IS NOT NULL
    ), fresh AS (
        SELECT p.channel, p.type, p.customer_id, min(p.occurred_at) AS first_at
        FROM pending p
        WHERE NOT EXISTS (
            SELECT 1 FROM interaction_firsts f
            WHERE f.campaign_id = :c AND f.type = p.type AND f.channel = p.channel
              AND f.customer_id = p.customer_id
        )
        GROUP BY p.channel, p.type, p.customer_id
    )
    SELECT channel, type, recipients, events, CAST(NULL AS timestamptz) AS hour
    FROM campaign_counters WHERE campaign_id = :c
    UNION ALL
    SELECT NULL, type, recipients, 0, hour
    FROM campaign_hourly WHERE campaign_id = :c AND type = ANY(:timeline_types)
    UNION ALL
    SELECT channel, type, recipients, events, NULL FROM counter_deltas WHERE campaign_id = :c
    UNION ALL
    SELECT NULL, type, recipients, 0, hour FROM counter_deltas
    WHERE campaign_id = :c AND channel = :all AND recipients > 0 AND type = ANY(:timeline_types)
    UNION ALL
    SELECT channel, type, 0, count(*), NULL FROM pending GROUP BY channel, type
    UNION ALL
    SELECT channel, type, count(*), 0, NULL FROM fresh GROUP BY channel, type
    UNION ALL
    SELECT NULL, type, count(*), 0, date_bin('1 hour', first_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')
    FROM fresh WHERE channel = :all AND type = ANY(:timeline_types)
    GROUP BY 2, 5
    UNION ALL
    SELECT :pending_marker, NULL, 0, count(*), statement_timestamp() FROM pending
    WHERE channel = :all AND type <> ALL(CAST(:human_list AS text[]))
    """
)
_PENDING = "~pending"  # the row of _STATS that says how many interactions were not rolled up


async def campaign_stats(conn: AsyncConnection, campaign_id: str) -> CampaignStats:
    params = {
        "c": campaign_id,
        "timeline_types": list(TIMELINE_TYPES),
        "all": ALL,
        "pending_marker": _PENDING,
        "machine": MACHINE,
        "human_types": json.dumps(HUMAN_TYPES),
        "human_list": list(HUMAN_TYPES.values()),
    }
    recipients: dict[str, dict[str, int]] = {}
    events: dict[str, dict[str, int]] = {}
    hours: dict[datetime, dict[str, int]] = {}
    pending, as_of = 0, datetime.now(UTC)
    for channel, type_, n_recipients, n_events, hour in await conn.execute(_STATS, params):
        if channel == _PENDING:
            pending, as_of = int(n_events), hour
        elif channel is None:
            bucket = hours.setdefault(hour, {})
            bucket[type_] = bucket.get(type_, 0) + int(n_recipients)
        else:
            by_type = recipients.setdefault(channel, {})
            by_type[type_] = by_type.get(type_, 0) + int(n_recipients)
            by_type = events.setdefault(channel, {})
            by_type[type_] = by_type.get(type_, 0) + int(n_events)
    counters: dict[str, dict[str, int]] = {}
    for channel in recipients:
        # byChannel counts messages (README "Stats"): a campaign with several runs (RECURRING,
        # TRIGGERED, journeys) sends a recipient more than one message per channel. Each
        # message has one ledger interaction, so messages = events; opens and clicks stay
        # distinct recipients.
        counters[channel] = {
            type_: (events[channel][type_] if channel != ALL and type_ in MESSAGE_TYPES else n)
            for type_, n in recipients[channel].items()
        }
    totals = counts_from(counters.get(ALL, {}))
    by_channel = {ch: counts_from(v) for ch, v in counters.items() if ch != ALL}
    timeline = [
        HourBucket(
            hour=h, sent=v.get(T.SENT, 0), opened=v.get(T.OPENED, 0), human_opened=v.get(OPENED_HUMAN, 0)
        )
        for h, v in sorted(hours.items())
    ]
    human = {
        ch: HumanCounts(opened=v.get(OPENED_HUMAN, 0), clicked=v.get(CLICKED_HUMAN, 0))
        for ch, v in recipients.items()
    }
    return CampaignStats(
        totals=totals,
        by_channel=by_channel,
        timeline=timeline,
        human=human.get(ALL, HumanCounts()),
        human_by_channel={ch: v for ch, v in human.items() if ch != ALL},
        rollup_pending=pending,
        as_of=as_of,
    )


@dataclass(frozen=True)
class InteractionFilter:
    """The interactions page's filters. A message's SENT is its ledger row (`deliveries`, SENT at
    `sent_at`: db.ledger.sends writes no interaction row for it), every other interaction a row of
    `interactions`; so the page reads one source or both, as the type asks."""

    type: str | None = None
    channel: str | None = None
    customer_id: str | None = None

    def where(self, campaign_id: str) -> tuple[str, dict[str, Any]]:
        """SQL conditions on the columns both sources have, with only the filters given, so the
        planner picks the matching index."""
        clauses = ["campaign_id = :c"]
        params: dict[str, Any] = {"c": campaign_id}
        for column, value in (("channel", self.channel), ("customer_id", self.customer_id)):
            if value is not None:
                clauses.append(f"{column} = :{column}")
                params[column] = value
        if self.type is not None:
            params["type"] = self.type
        return " AND ".join(clauses), params

    @property
    def logged(self) -> str | None:
        """The condition on `interactions.type` of the rows listed, None when none are. SENT rows
        there (a provider's settling of an UNKNOWN message, or a send recorded before migration
        0015) are not listed: their message's ledger row is."""
        if self.type is None:
            return f"type <> '{T.SENT.value}'"
        return None if self.type == T.SENT.value else "type = :type"

    @property
    def sent(self) -> bool:
        """Whether SENT ledger rows are listed."""
        return self.type in (None, T.SENT.value)


# A SENT ledger row as an interaction (its id is the message's).
_SENT_ROWS = (
    "SELECT id, tenant_id, customer_id, 'SENT' AS type, channel, sent_at AS occurred_at,"
    " CAST('{{}}' AS jsonb) AS metadata, CAST(NULL AS text) AS engagement_class,"
    " CAST(NULL AS text) AS class_reason FROM deliveries WHERE {where} AND outcome = 'SENT'"
)
_LOGGED_ROWS = (
    "SELECT id, tenant_id, customer_id, type, channel, occurred_at, metadata, engagement_class,"
    " class_reason FROM interactions WHERE {where} AND {logged}"
)


async def count_interactions(conn: AsyncConnection, campaign_id: str, f: InteractionFilter) -> int:
    where, params = f.where(campaign_id)
    if f.customer_id is not None:  # a handful of rows, each source on its own index
        parts = []
        if f.logged is not None:
            parts.append(f"(SELECT count(*) FROM interactions WHERE {where} AND {f.logged})")
        if f.sent:
            parts.append(f"(SELECT count(*) FROM deliveries WHERE {where} AND outcome = 'SENT')")
        return int((await conn.execute(text("SELECT " + " + ".join(parts)), params)).scalar_one())
    # One statement: the counters and the rolled_up flags are read from the same snapshot. Every
    # SENT is in the counters (counted by its step, or by the roll-up of a provider's settling).
    type_clause = "" if f.type is None else " AND type = :type"
    sql = (
        "SELECT (SELECT COALESCE(sum(events), 0) FROM campaign_counters"
        "         WHERE campaign_id = :c AND channel = :counter_channel AND type = ANY(:counter_types))"
        "    + (SELECT COALESCE(sum(events), 0) FROM counter_deltas"
        "         WHERE campaign_id = :c AND channel = :counter_channel AND type = ANY(:counter_types))"
        f"    + (SELECT count(*) FROM interactions WHERE {where}{type_clause} AND NOT rolled_up)"
    )
    params["counter_channel"] = f.channel or ALL
    params["counter_types"] = [f.type] if f.type is not None else [t.value for t in T]
    return int((await conn.execute(text(sql), params)).scalar_one())


async def page_interactions(
    conn: AsyncConnection, campaign_id: str, f: InteractionFilter, skip: int, take: int
) -> Sequence[RowMapping]:
    """Newest first. Each source is cut to its first `skip + take` rows in that order on its own
    index (`ix_interactions_campaign_time` / `_type_time`; SENT rows on `ix_deliveries_campaign_sent`)
    before the two are merged and the page is cut; the customer is joined to the page only."""
    where, params = f.where(campaign_id)
    order = "ORDER BY occurred_at DESC, id DESC"
    sources = []
    if f.logged is not None:
        sources.append((_LOGGED_ROWS.format(where=where, logged=f.logged), order))
    if f.sent:
        sources.append((_SENT_ROWS.format(where=where), "ORDER BY sent_at DESC, id DESC"))
    if len(sources) == 1:
        rows, own_order = sources[0]
        cut = f"{rows} {own_order}"
    else:
        cut = (
            " UNION ALL ".join(f"({rows} {own_order} LIMIT :upto)" for rows, own_order in sources)
            + f" {order}"
        )
    sql = f"""
        SELECT p.id, p.customer_id, p.type, p.channel, p.occurred_at, p.metadata,
               p.engagement_class, p.class_reason,
               cu.email AS customer_email, cu.first_name, cu.last_name
        FROM ({cut} OFFSET :skip LIMIT :take) p
        LEFT JOIN customers cu ON cu.id = p.customer_id AND cu.tenant_id = p.tenant_id
        ORDER BY p.occurred_at DESC, p.id DESC
    """
    params.update(skip=skip, take=take, upto=skip + take)
    return (await conn.execute(text(sql), params)).mappings().all()


def customer_name(first: str | None, last: str | None) -> str | None:
    name = " ".join(part for part in (first, last) if part)
    return name or None


async def run_stats(conn: AsyncConnection, campaign_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """Per-run ledger outcomes of a RECURRING campaign (each run's deliveries are counted)."""
    return [asdict(r) for r in await recent_runs(conn, campaign_id, limit)]


async def trigger_stats(conn: AsyncConnection, campaign_id: str) -> dict[str, Any]:
    """The event queue of a TRIGGERED campaign, by what became of the events."""
    return asdict(await queue_stats(conn, campaign_id))
