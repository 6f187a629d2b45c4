"""Tables of what happens after a send and around it: interactions and roll-ups, customer events
and trigger matches, sending policies and holds, rate limits, test sends, holdout conversions."""

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Date, Float, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.model_base import TS, Base, _now, index_where, unique_where


class Interaction(Base):
    """Everything that happened to a message: SENT, DELIVERED, OPENED, CLICKED, ...

    `event_key` makes webhooks and conversions idempotent; `rolled_up` marks rows already
    counted in the roll-ups, so a retried page never counts twice.
    """

    __tablename__ = "interactions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(100))
    campaign_id: Mapped[str] = mapped_column(String(40))
    delivery_id: Mapped[str | None] = mapped_column(String(40))
    customer_id: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(TS)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, server_default=text("'{}'::jsonb"))
    event_key: Mapped[str | None] = mapped_column(String(300))
    rolled_up: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # Opens and clicks: `human` or `machine`, and why (docs/engagement.md); NULL for other types.
    engagement_class: Mapped[str | None] = mapped_column(String(8))
    class_reason: Mapped[str | None] = mapped_column(String(60))
    __table_args__ = (
        Index("ix_interactions_campaign_time", "campaign_id", "occurred_at", "id"),
        Index("ix_interactions_campaign_type_time", "campaign_id", "type", "occurred_at", "id"),
        Index("ix_interactions_campaign_customer", "campaign_id", "customer_id", "occurred_at"),
        # A message's own events; its SENT row is never looked up by message (migration 0014).
        index_where("ix_interactions_delivery", text("type <> 'SENT'"), "delivery_id"),
        index_where("ix_interactions_not_rolled", text("NOT rolled_up"), "campaign_id"),
        # Only rows with a key are indexed: an interaction the ledger logs (a bounce, a failure;
        # a SENT before migration 0015) has none, and skipping its entry saves it a unique-index
        # insertion (migration 0013).
        unique_where("uq_interactions_event_key", text("event_key IS NOT NULL"), "event_key"),
    )


class InteractionFirst(Base):
    """First interaction of each type per recipient (channel 'ALL') and per message (by channel).

    Inserting here with ON CONFLICT DO NOTHING is what makes the distinct counts O(1).
    """

    __tablename__ = "interaction_firsts"
    campaign_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(16), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(TS)


class CampaignCounter(Base):
    """Roll-up: distinct recipients and interaction events per (campaign, channel|ALL, type)."""

    __tablename__ = "campaign_counters"
    campaign_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    type: Mapped[str] = mapped_column(String(16), primary_key=True)
    recipients: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    events: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class CampaignHourly(Base):
    """Roll-up for the timeline: recipients whose first interaction of a type fell in the hour."""

    __tablename__ = "campaign_hourly"
    campaign_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    hour: Mapped[datetime] = mapped_column(TS, primary_key=True)
    type: Mapped[str] = mapped_column(String(16), primary_key=True)
    recipients: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class CounterDelta(Base):
    """Counts not folded into `campaign_counters` / `campaign_hourly` yet: the ledger's step adds
    one row per (campaign, channel) for the sends it records (append-only, so concurrent group
    commits never wait on a counter row); the roll-ups fold and delete them, and every read adds
    what is left (docs/architecture.md, "Counting sends")."""

    __tablename__ = "counter_deltas"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(16))
    hour: Mapped[datetime] = mapped_column(TS)
    recipients: Mapped[int] = mapped_column(BigInteger)
    events: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (Index("ix_counter_deltas_campaign", "campaign_id"),)


class CustomerEvent(Base):
    """An event posted to `POST /events`; its id is unique per tenant, so a repeat is ignored."""

    __tablename__ = "customer_events"
    tenant_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    type: Mapped[str] = mapped_column(String(200))
    customer_id: Mapped[str] = mapped_column(String(40))
    club_id: Mapped[str | None] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column(TS)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    received_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    __table_args__ = (
        Index("ix_customer_events_customer_type", "tenant_id", "customer_id", "type", "received_at"),
    )


class TriggerMatch(Base):
    """An event routed to a TRIGGERED campaign: the campaign's send queue, drained in `seq` order.

    One row per (campaign, event id) whatever how often the event is posted. `state` is PENDING
    (to send), DONE (sent through its own EVENT run, the ledger holding the outcome) or
    SKIPPED_PAUSED (arrived while the campaign was paused: counted, never sent).
    """

    __tablename__ = "trigger_matches"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(String(40))
    tenant_id: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str] = mapped_column(String(200))
    customer_id: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    __table_args__ = (
        UniqueConstraint("campaign_id", "event_id", name="uq_trigger_matches_campaign_event"),
        Index("ix_trigger_matches_pending", "campaign_id", "seq", postgresql_where=text("state = 'PENDING'")),
    )


class TenantPolicy(Base):
    """A tenant's sending policy (core.policy.TenantPolicy); no row: the defaults."""

    __tablename__ = "tenant_policies"
    tenant_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=_now())


class FrequencyHold(Base):
    """One message a frequency cap counted, written as it passed the gate (db.policies)."""

    __tablename__ = "frequency_holds"
    run_id: Mapped[str] = mapped_column(String(60), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(100))
    held_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    __table_args__ = (Index("ix_frequency_holds_person", "tenant_id", "channel", "customer_id", "held_at"),)


class HeldMessage(Base):
    """A message quiet hours hold back until `until`; `sweep` is the campaign sweep that took it."""

    __tablename__ = "held_messages"
    run_id: Mapped[str] = mapped_column(String(60), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String(40))
    tenant_id: Mapped[str] = mapped_column(String(100))
    until: Mapped[datetime] = mapped_column(TS)
    sweep: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (Index("ix_held_messages_campaign", "campaign_id", "sweep", "until"),)


class RateLimitAccount(Base):
    """A provider account's shared bucket (db.rate_limits): the per-second tokens left when last
    refilled, and what it granted on `day` (UTC) against its per-day limit."""

    __tablename__ = "rate_limit_accounts"
    account: Mapped[str] = mapped_column(String(100), primary_key=True)
    tokens: Mapped[float | None] = mapped_column(Float(precision=53))
    refilled_at: Mapped[datetime | None] = mapped_column(TS)
    day: Mapped[date | None] = mapped_column(Date)
    day_granted: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class RateLimitLane(Base):
    """A tenant's lane on a provider account: its own bucket, refilled at its weighted share of the
    account among the lanes that wanted tokens in the last second (db.rate_limits)."""

    __tablename__ = "rate_limit_lanes"
    account: Mapped[str] = mapped_column(String(100), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    tokens: Mapped[float | None] = mapped_column(Float(precision=53))
    refilled_at: Mapped[datetime | None] = mapped_column(TS)
    last_wanted_at: Mapped[datetime] = mapped_column(TS)
    weight: Mapped[float] = mapped_column(Float(precision=53), server_default=text("1"))


class TestSend(Base):
    """One test message (README "Test sends"): a record apart from the ledger, so stats never see it."""

    __tablename__ = "test_sends"
    __test__ = False  # not a pytest class
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(100))
    campaign_id: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(320))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    kind: Mapped[str] = mapped_column(String(8), server_default=text("'TEST'"))  # TEST | SEED
    variant: Mapped[str] = mapped_column(String(1), server_default=text("''"))  # '' without a test
    __table_args__ = (
        Index("ix_test_sends_tenant_time", "tenant_id", "created_at"),
        unique_where(
            "uq_test_sends_seed", text("kind = 'SEED'"), "campaign_id", "channel", "variant", "address"
        ),
    )


class HoldoutConversion(Base):
    """A conversion of a campaign's holdout recipient (never messaged): the lift's control side."""

    __tablename__ = "holdout_conversions"
    campaign_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(TS)
