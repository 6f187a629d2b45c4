"""The Postgres data model: audience, content, campaigns (read model), the ledger and stats roll-ups.

The campaign workflow is the source of truth for lifecycle state; the `campaigns` table is its
read model for listing and filtering. Every table is tenant-scoped through `tenant_id` (directly or
through its campaign) and every query the API makes has an index.
"""

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

TS = DateTime(timezone=True)


class Base(DeclarativeBase):
    pass


def _now() -> Any:
    return text("now()")


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(100))
    external_id: Mapped[str] = mapped_column(String(200))
    club_id: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    email_opt_in: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    sms_opt_in: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Suppressions: set by unsubscribe links and hard bounces; they outrank opt-ins.
    email_unsubscribed_at: Mapped[datetime | None] = mapped_column(TS)
    sms_unsubscribed_at: Mapped[datetime | None] = mapped_column(TS)
    email_bounced_at: Mapped[datetime | None] = mapped_column(TS)
    # The person's IANA zone, for quiet hours (NULL: the campaign's zone).
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    __table_args__ = (
        UniqueConstraint("tenant_id", "external_id", name="uq_customers_tenant_external"),
        Index("ix_customers_tenant_club", "tenant_id", "club_id"),
        Index("ix_customers_tenant_email", "tenant_id", "email"),
        # Another record of the tenant with the same address, unsubscribed or bounced (0005).
        Index(
            "ix_customers_email_unsubscribed",
            "tenant_id",
            "email",
            postgresql_where=text("email_unsubscribed_at IS NOT NULL"),
        ),
        Index(
            "ix_customers_email_bounced",
            "tenant_id",
            "email",
            postgresql_where=text("email_bounced_at IS NOT NULL"),
        ),
        Index(
            "ix_customers_sms_unsubscribed",
            "tenant_id",
            "phone",
            postgresql_where=text("sms_unsubscribed_at IS NOT NULL"),
        ),
    )


class Segment(Base):
    __tablename__ = "segments"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(100))
    club_id: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    filter: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    __table_args__ = (Index("ix_segments_tenant_created", "tenant_id", "created_at"),)


class SegmentMember(Base):
    """Members of a STATIC segment; the primary key doubles as the keyset for snapshots."""

    __tablename__ = "segment_members"
    segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    __table_args__ = (Index("ix_segment_members_customer", "customer_id"),)


class Template(Base):
    __tablename__ = "templates"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(100))
    club_id: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    # The current version; every version's content is kept in template_versions.
    version: Mapped[int] = mapped_column(Integer, server_default="1")  # not text(): `text` is a column here
    created_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    __table_args__ = (Index("ix_templates_tenant_created", "tenant_id", "created_at"),)


class TemplateVersion(Base):
    """The content of each version of a template; a send run pins the versions it sends."""

    __tablename__ = "template_versions"
    template_id: Mapped[str] = mapped_column(ForeignKey("templates.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=_now())


class Suppression(Base):
    """The tenant suppression list: addresses that never receive a message on that channel.

    Email addresses are stored lower-cased and matched case-insensitively; phones in E.164.
    """

    __tablename__ = "suppressions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(320))
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    __table_args__ = (
        UniqueConstraint("tenant_id", "channel", "address", name="uq_suppressions_tenant_channel_address"),
        Index("ix_suppressions_tenant_created", "tenant_id", "created_at"),
    )


class Campaign(Base):
    """Read model of a campaign; the lifecycle columns are written only by the workflow."""

    __tablename__ = "campaigns"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(100))
    club_id: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    channels: Mapped[list[str]] = mapped_column(ARRAY(String(8)))
    segment_id: Mapped[str | None] = mapped_column(String(40))
    email_template_id: Mapped[str | None] = mapped_column(String(40))
    sms_template_id: Mapped[str | None] = mapped_column(String(40))
    timezone: Mapped[str] = mapped_column(String(64), server_default=text("'UTC'"))
    scheduled_at: Mapped[datetime | None] = mapped_column(TS)
    target_count: Mapped[int | None] = mapped_column(Integer)
    skipped_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failed_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    unknown_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    started_at: Mapped[datetime | None] = mapped_column(TS)
    paused_at: Mapped[datetime | None] = mapped_column(TS)
    resumed_at: Mapped[datetime | None] = mapped_column(TS)
    cancelled_at: Mapped[datetime | None] = mapped_column(TS)
    completed_at: Mapped[datetime | None] = mapped_column(TS)
    conversion_event: Mapped[str | None] = mapped_column(String(200))
    conversion_window_hours: Mapped[int | None] = mapped_column(Integer)
    # RECURRING: the schedule as the API validated it (camelCase JSON, see core.recurrence).
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    next_run_at: Mapped[datetime | None] = mapped_column(TS)
    last_run_at: Mapped[datetime | None] = mapped_column(TS)
    run_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Why the campaign paused itself (a step that could not succeed); cleared on resume.
    last_error: Mapped[str | None] = mapped_column(Text)
    # TRIGGERED: the event type and the data[key] == value conditions an event must meet.
    trigger_event: Mapped[str | None] = mapped_column(String(200))
    trigger_conditions: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    # Per-campaign overrides of the tenant's sending policy (core.policy.CampaignPolicy).
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    # Recipient-local delivery (core.policy.DeliverAt), ONE_TIME and RECURRING only.
    deliver_at: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    # Who approved the campaign and when (a tenant that requires approvals); cleared by an edit.
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_at: Mapped[datetime | None] = mapped_column(TS)
    # Percent of the audience held out as a control group (skipped HOLDOUT, never messaged).
    holdout_percent: Mapped[float] = mapped_column(Float, server_default=text("0"))
    # At the rate limits' current pace (the workflow's estimate), for GET /campaigns/:id.
    expected_finish_at: Mapped[datetime | None] = mapped_column(TS)
    # An A/B test (core.experiments.ABTest), its winner and the decision's numbers.
    ab_test: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    ab_winner: Mapped[str | None] = mapped_column(String(1))
    ab_decision: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    created_by: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    idempotency_hash: Mapped[str | None] = mapped_column(String(64))
    # Monotonic version of the lifecycle state written by the workflow; stale syncs are ignored.
    state_version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    __table_args__ = (
        Index("ix_campaigns_tenant_created", "tenant_id", "created_at"),
        Index("ix_campaigns_tenant_status_created", "tenant_id", "status", "created_at"),
        Index("ix_campaigns_tenant_club_created", "tenant_id", "club_id", "created_at"),
        Index(
            "uq_campaigns_tenant_idempotency",
            "tenant_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        Index("ix_campaigns_tenant_conversion", "tenant_id", "conversion_event"),
        Index(
            "ix_campaigns_tenant_trigger",
            "tenant_id",
            "trigger_event",
            postgresql_where=text("type = 'TRIGGERED'"),
        ),
    )


class SendRun(Base):
    """One send of a campaign: a snapshot of its audience taken when sending starts."""

    __tablename__ = "send_runs"
    id: Mapped[str] = mapped_column(String(60), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(100))
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    snapshot_complete: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    target_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # The template versions this run sends, pinned when its snapshot starts (NULL: the current one).
    email_template_version: Mapped[int | None] = mapped_column(Integer)
    sms_template_version: Mapped[int | None] = mapped_column(Integer)
    completed_at: Mapped[datetime | None] = mapped_column(TS)
    # Sending stops when halt_epoch >= the epoch a batch was started with (pause/cancel).
    halt_epoch: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # SEGMENT: a snapshot of the segment (numbered 1, 2, ... per campaign); EVENT: one triggering
    # event's recipient (number 0); JOURNEY: one send of a journey's child workflow (number 0).
    kind: Mapped[str] = mapped_column(String(8), server_default=text("'SEGMENT'"))
    source_id: Mapped[str | None] = mapped_column(String(200))
    __table_args__ = (
        Index(
            "uq_send_runs_campaign_number",
            "campaign_id",
            "number",
            unique=True,
            postgresql_where=text("kind = 'SEGMENT'"),
        ),
    )


class RunRecipient(Base):
    """The audience snapshot of a run; keyset-paginated by customer id while sending."""

    __tablename__ = "run_recipients"
    run_id: Mapped[str] = mapped_column(ForeignKey("send_runs.id", ondelete="CASCADE"), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)


class Delivery(Base):
    """The ledger: one row per (run, recipient, channel), claimed before the provider call.

    Its id is the provider idempotency key. PENDING means claimed and not yet answered.
    """

    __tablename__ = "deliveries"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("send_runs.id", ondelete="CASCADE"))
    campaign_id: Mapped[str] = mapped_column(String(40))
    tenant_id: Mapped[str] = mapped_column(String(100))
    customer_id: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(8))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(String(320))
    claimed_at: Mapped[datetime | None] = mapped_column(TS)
    sent_at: Mapped[datetime | None] = mapped_column(TS)
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    # The A/B variant the message carried (core.experiments); NULL without a test.
    variant: Mapped[str | None] = mapped_column(String(1))
    __table_args__ = (
        UniqueConstraint("run_id", "customer_id", "channel", name="uq_deliveries_run_customer_channel"),
        Index("ix_deliveries_campaign_customer", "campaign_id", "customer_id", "channel"),
        Index("ix_deliveries_campaign_outcome", "campaign_id", "outcome", "channel"),
        Index("ix_deliveries_provider_message", "provider_message_id"),
    )


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
    event_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    rolled_up: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    __table_args__ = (
        Index("ix_interactions_campaign_time", "campaign_id", "occurred_at", "id"),
        Index("ix_interactions_campaign_type_time", "campaign_id", "type", "occurred_at", "id"),
        Index("ix_interactions_campaign_customer", "campaign_id", "customer_id", "occurred_at"),
        Index("ix_interactions_delivery", "delivery_id"),
        Index(
            "ix_interactions_not_rolled",
            "campaign_id",
            postgresql_where=text("NOT rolled_up"),
        ),
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
        Index(
            "uq_test_sends_seed",
            "campaign_id",
            "channel",
            "variant",
            "address",
            unique=True,
            postgresql_where=text("kind = 'SEED'"),
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
