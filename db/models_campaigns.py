"""Tables of the campaigns (the read model of their workflows) and their sends: runs, the run
snapshot and the delivery ledger."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
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
from sqlalchemy.orm import Mapped, mapped_column

from db.model_base import TS, Base, NamedRecord, _now, index_where, unique_where


class Campaign(NamedRecord, Base):
    """Read model of a campaign; the lifecycle columns are written only by the workflow."""

    __tablename__ = "campaigns"
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
    # The sender identity it sends as (docs/tenants-and-providers.md); NULL: the tenant's default.
    sender_identity_id: Mapped[str | None] = mapped_column(String(40))
    # A follow-up's source campaign and what it followed up on (docs/engagement.md); NULL: none.
    source_campaign_id: Mapped[str | None] = mapped_column(String(40))
    follow_up: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
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
        unique_where(
            "uq_campaigns_tenant_idempotency",
            text("idempotency_key IS NOT NULL"),
            "tenant_id",
            "idempotency_key",
        ),
        Index("ix_campaigns_tenant_conversion", "tenant_id", "conversion_event"),
        index_where("ix_campaigns_tenant_trigger", text("type = 'TRIGGERED'"), "tenant_id", "trigger_event"),
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
        unique_where("uq_send_runs_campaign_number", text("kind = 'SEGMENT'"), "campaign_id", "number"),
    )


class RunRecipient(Base):
    """The audience snapshot of a run; keyset-paginated by customer id while sending."""

    __tablename__ = "run_recipients"
    # The run's id, without a foreign key (migration 0016; docs/architecture.md, "The ledger's keys").
    run_id: Mapped[str] = mapped_column(String(60), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)


class Delivery(Base):
    """The ledger: one row per (run, recipient, channel), claimed before the provider call.

    Its id is the provider idempotency key. PENDING means claimed and not yet answered.
    """

    __tablename__ = "deliveries"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # Its run's id, without a foreign key (migration 0016; docs/architecture.md, "The ledger's keys").
    run_id: Mapped[str] = mapped_column(String(60))
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
        # The interactions page's SENT rows, newest first (db.stats; migration 0015).
        index_where("ix_deliveries_campaign_sent", text("outcome = 'SENT'"), "campaign_id", "sent_at", "id"),
        # A claim has no provider id yet, and no webhook looks one up by NULL (migration 0014).
        index_where(
            "ix_deliveries_provider_message", text("provider_message_id IS NOT NULL"), "provider_message_id"
        ),
    )
