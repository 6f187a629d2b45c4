"""Lookups of deliveries for the API and the journey activities.

Tracking links and webhooks resolve the message they name (`MessageRef`); events find the message a
conversion is attributed to (`last_touches`); journeys and the lifecycle tally outcomes; stats read
per-run outcomes; the recipients listing pages the ledger.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import Outcome
from core.messages import Counts
from db.ledger.outcomes import MessageOutcome
from db.models import Delivery


@dataclass(frozen=True)
class MessageRef:
    """One message of the ledger as callbacks need it: whose it is and on which channel."""

    delivery_id: str
    tenant_id: str
    campaign_id: str
    customer_id: str
    channel: str
    provider_message_id: str | None


_MESSAGE_COLUMNS = (
    "SELECT id, tenant_id, campaign_id, customer_id, channel, provider_message_id FROM deliveries"
)
_RESOLVE = text(_MESSAGE_COLUMNS + " WHERE id = ANY(:ids) OR provider_message_id = ANY(:pmids)")
_OF_CAMPAIGN = text(_MESSAGE_COLUMNS + " WHERE id = :delivery AND campaign_id = :campaign")


def _message(row: Any) -> MessageRef:
    return MessageRef(
        delivery_id=row.id,
        tenant_id=row.tenant_id,
        campaign_id=row.campaign_id,
        customer_id=row.customer_id,
        channel=row.channel,
        provider_message_id=row.provider_message_id,
    )


async def resolve_messages(
    conn: AsyncConnection, delivery_ids: Sequence[str], provider_message_ids: Sequence[str]
) -> list[MessageRef]:
    """Every message named by our delivery id or by the provider's message id, in one query.
    Provider ids are matched as stored: a caller that may receive several spellings passes each."""
    rows = await conn.execute(_RESOLVE, {"ids": list(delivery_ids), "pmids": list(provider_message_ids)})
    return [_message(row) for row in rows]


async def message_of_campaign(conn: AsyncConnection, delivery_id: str, campaign_id: str) -> MessageRef | None:
    """The message, only if it belongs to that campaign (a tracking token names both)."""
    row = (await conn.execute(_OF_CAMPAIGN, {"delivery": delivery_id, "campaign": campaign_id})).first()
    return None if row is None else _message(row)


@dataclass(frozen=True)
class LastTouch:
    """The message of a campaign a conversion is attributed to."""

    campaign_id: str
    tenant_id: str
    delivery_id: str
    channel: str


# Per campaign converting on the event type: the last message SENT to the customer within the
# campaign's conversion window (or the default) before the event.
_LAST_TOUCHES = text(
    """
    SELECT c.id AS campaign_id, c.tenant_id, d.id AS delivery_id, d.channel
    FROM campaigns c
    CROSS JOIN LATERAL (
        SELECT d.id, d.channel FROM deliveries d
        WHERE d.campaign_id = c.id AND d.customer_id = :customer AND d.outcome = 'SENT'
          AND d.sent_at <= :at
          AND d.sent_at >= :at - make_interval(hours => COALESCE(c.conversion_window_hours, :window))
        ORDER BY d.sent_at DESC, d.channel
        LIMIT 1
    ) d
    WHERE c.tenant_id = :tenant AND c.conversion_event = :type
    ORDER BY c.id
    """
)


async def last_touches(
    conn: AsyncConnection,
    tenant_id: str,
    customer_id: str,
    event_type: str,
    at: datetime,
    default_window_hours: int,
) -> list[LastTouch]:
    """For each campaign of the tenant whose conversion event is `event_type`: the last message
    sent to the customer at most its window (default `default_window_hours`) before `at`; a
    tie on the time goes to the channel first in name order. Campaigns id order."""
    params = {
        "tenant": tenant_id,
        "type": event_type,
        "customer": customer_id,
        "at": at,
        "window": default_window_hours,
    }
    return [LastTouch(*row) for row in await conn.execute(_LAST_TOUCHES, params)]


@dataclass(frozen=True)
class OutcomeTally:
    """Ledger rows by outcome (messages: every channel counts)."""

    pending: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    bounced: int = 0
    unknown: int = 0

    @classmethod
    def from_rows(cls, rows: Iterable[Any]) -> "OutcomeTally":
        """From `(outcome, count)` rows, as `SELECT outcome, count(*) ... GROUP BY outcome` gives."""
        by: Mapping[str, int] = {str(row[0]): int(row[1]) for row in rows}
        return cls(
            pending=by.get(Outcome.PENDING, 0),
            sent=by.get(Outcome.SENT, 0),
            skipped=by.get(Outcome.SKIPPED, 0),
            failed=by.get(Outcome.FAILED, 0),
            bounced=by.get(Outcome.BOUNCED, 0),
            unknown=by.get(Outcome.UNKNOWN, 0),
        )

    def counts(self) -> Counts:
        """As workflow counts. A PENDING row is a claim with no answer yet: it may have gone out,
        so it counts as unknown (the outcome it takes if nobody answers it)."""
        return Counts(
            sent=self.sent,
            skipped=self.skipped,
            failed=self.failed,
            bounced=self.bounced,
            unknown=self.unknown + self.pending,
        )


_RUN_TALLY = text("SELECT outcome, count(*) FROM deliveries WHERE run_id = :r GROUP BY outcome")
_CAMPAIGN_TALLY = text("SELECT outcome, count(*) FROM deliveries WHERE campaign_id = :c GROUP BY outcome")
_SENT_CUSTOMERS = text(
    "SELECT DISTINCT customer_id FROM deliveries"
    " WHERE run_id = :r AND outcome = 'SENT' ORDER BY customer_id LIMIT :n"
)
_UNKNOWN_COUNT = text("SELECT count(*) FROM deliveries WHERE campaign_id = :c AND outcome = 'UNKNOWN'")


async def run_tally(conn: AsyncConnection, run_id: str) -> OutcomeTally:
    return OutcomeTally.from_rows(await conn.execute(_RUN_TALLY, {"r": run_id}))


async def campaign_tally(conn: AsyncConnection, campaign_id: str) -> OutcomeTally:
    """Every run, every channel of the campaign."""
    return OutcomeTally.from_rows(await conn.execute(_CAMPAIGN_TALLY, {"c": campaign_id}))


async def sent_customer_ids(conn: AsyncConnection, run_id: str, limit: int) -> list[str]:
    """The first `limit` customers (id order) the run sent a message to, on any channel."""
    rows = await conn.execute(_SENT_CUSTOMERS, {"r": run_id, "n": limit})
    return [str(customer_id) for customer_id in rows.scalars()]


async def count_unknown(conn: AsyncConnection, campaign_id: str) -> int:
    """How many of the campaign's messages a crash left UNKNOWN (what a resend would resend)."""
    return int((await conn.execute(_UNKNOWN_COUNT, {"c": campaign_id})).scalar_one())


_ENGAGEMENT = text(
    "SELECT DISTINCT i.type FROM interactions i"
    " LEFT JOIN deliveries d ON d.id = i.delivery_id"
    " WHERE i.campaign_id = :c AND i.customer_id = :cu"
    "   AND i.type IN ('OPENED', 'CLICKED')"
    # A journey decides on people: a machine's open or click (docs/engagement.md) is no signal;
    # unclassified ones (provider webhooks, older rows) count as human, as in the stats.
    "   AND i.engagement_class IS DISTINCT FROM 'machine'"
    "   AND (CAST(:r AS text) IS NULL OR d.run_id = :r)"
)


async def engagement_types(
    conn: AsyncConnection, campaign_id: str, customer_id: str, run_id: str | None
) -> set[str]:
    """Which of OPENED and CLICKED the customer did on the campaign's messages, as a person (of
    that run, if one is named: the run is known only through the message's ledger row)."""
    rows = await conn.execute(_ENGAGEMENT, {"c": campaign_id, "cu": customer_id, "r": run_id})
    return {str(t) for t in rows.scalars()}


@dataclass(frozen=True)
class RunOutcomes:
    """One SEGMENT run: its snapshot size and its ledger outcomes (messages)."""

    run_number: int
    started_at: datetime
    completed_at: datetime | None
    target_count: int
    sent: int
    skipped: int
    failed: int
    bounced: int
    unknown: int


# PENDING counts as unknown: a claim without an answer may have gone out.
_RECENT_RUNS = text(
    """
    SELECT r.number AS run_number, r.started_at, r.completed_at, r.target_count,
           count(*) FILTER (WHERE d.outcome = 'SENT') AS sent,
           count(*) FILTER (WHERE d.outcome = 'SKIPPED') AS skipped,
           count(*) FILTER (WHERE d.outcome = 'FAILED') AS failed,
           count(*) FILTER (WHERE d.outcome = 'BOUNCED') AS bounced,
           count(*) FILTER (WHERE d.outcome IN ('UNKNOWN', 'PENDING')) AS unknown
    FROM (SELECT * FROM send_runs WHERE campaign_id = :c AND kind = 'SEGMENT'
          ORDER BY number DESC LIMIT :n) r
    LEFT JOIN deliveries d ON d.run_id = r.id
    GROUP BY r.id, r.number, r.started_at, r.completed_at, r.target_count
    ORDER BY r.number DESC
    """
)


async def recent_runs(conn: AsyncConnection, campaign_id: str, limit: int) -> list[RunOutcomes]:
    """The campaign's latest `limit` SEGMENT runs, newest first."""
    return [RunOutcomes(*row) for row in await conn.execute(_RECENT_RUNS, {"c": campaign_id, "n": limit})]


@dataclass(frozen=True)
class DeliveryRow(MessageOutcome):
    """One ledger row as the recipients listing shows it (positional: the order of `_LISTED`)."""

    sent_at: datetime | None
    provider_message_id: str | None
    run_id: str
    updated_at: datetime


@dataclass(frozen=True)
class DeliveryFilter:
    """Filters of the recipients listing; None: not filtered on."""

    outcome: str | None = None
    channel: str | None = None
    customer_id: str | None = None

    def where(self, campaign_id: str) -> ColumnElement[bool]:
        conditions = [Delivery.campaign_id == campaign_id]
        if self.outcome is not None:
            conditions.append(Delivery.outcome == self.outcome)
        if self.channel is not None:
            conditions.append(Delivery.channel == self.channel)
        if self.customer_id is not None:
            conditions.append(Delivery.customer_id == self.customer_id)
        return and_(*conditions)


async def count_deliveries(conn: AsyncConnection, campaign_id: str, f: DeliveryFilter) -> int:
    total = await conn.execute(select(func.count()).select_from(Delivery).where(f.where(campaign_id)))
    return int(total.scalar_one())


# The columns of DeliveryRow, in its field order.
_LISTED = (
    Delivery.customer_id,
    Delivery.channel,
    Delivery.outcome,
    Delivery.reason,
    Delivery.detail,
    Delivery.address,
    Delivery.sent_at,
    Delivery.provider_message_id,
    Delivery.run_id,
    Delivery.updated_at,
)


async def page_deliveries(
    conn: AsyncConnection, campaign_id: str, f: DeliveryFilter, skip: int, take: int
) -> list[DeliveryRow]:
    """One page of the campaign's ledger rows, in (customer, channel) order."""
    rows = await conn.execute(
        select(*_LISTED)
        .where(f.where(campaign_id))
        .order_by(Delivery.customer_id, Delivery.channel)
        .offset(skip)
        .limit(take)
    )
    return [DeliveryRow(*tuple(row)) for row in rows]
