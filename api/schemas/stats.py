"""Schemas of GET /campaigns/:id/stats and /interactions, field for field as the seed spells them."""

from typing import Any

from pydantic import Field

from api.schemas.common import ApiOut, PageMeta, UtcDatetime
from core.engagement import EngagementClass
from core.enums import Channel, InteractionType
from core.experiments import Lift
from core.policy import RateBasis


class EmailChannelStats(ApiOut):
    sent: int
    delivered: int
    opened: int
    clicked: int
    bounced: int


class SmsChannelStats(ApiOut):
    sent: int
    delivered: int
    failed: int


class ChannelStats(ApiOut):
    # Channel names are the JSON keys, upper case as in the seed (not camelCased).
    email: EmailChannelStats = Field(alias="EMAIL")
    sms: SmsChannelStats = Field(alias="SMS")


class TimelineBucket(ApiOut):
    hour: UtcDatetime
    sent: int
    opened: int
    # Recipients whose first open that was not a machine's fell in this hour (README "Honest engagement").
    human_opened: int = 0


class RunStats(ApiOut):
    """One run of a RECURRING campaign: its audience snapshot and ledger outcomes (messages)."""

    run_number: int = Field(description="1 for the first run")
    started_at: UtcDatetime
    completed_at: UtcDatetime | None = Field(description="null while the run sends")
    target_count: int = Field(description="recipients in the run's audience snapshot")
    sent: int
    skipped: int
    failed: int
    bounced: int
    unknown: int


class TriggerStats(ApiOut):
    """Events routed to a TRIGGERED campaign, by what became of them."""

    matched: int
    queued: int
    processed: int
    skipped_while_paused: int
    closed: int


class CampaignStatsPublic(ApiOut):
    campaign_id: str
    target_count: int | None = Field(description="recipients of the audience snapshot(s); null before any")
    sent_count: int = Field(description="recipients with at least one message SENT")
    delivered_count: int
    opened_count: int = Field(
        description="recipients who opened: people and machines (humanOpenedCount: people)"
    )
    clicked_count: int = Field(
        description="recipients who clicked: people and machines (humanClickedCount: people)"
    )
    converted_count: int
    unsubscribed_count: int
    bounced_count: int
    delivery_rate: float | None
    open_rate: float | None
    click_rate: float | None
    conversion_rate: float | None
    by_channel: ChannelStats
    timeline: list[TimelineBucket]
    skipped_count: int
    failed_count: int
    unknown_count: int
    # RECURRING: the latest runs (newest first, at most 100); TRIGGERED: the event queue.
    runs: list[RunStats] | None = None
    triggers: TriggerStats | None = None
    # How fresh: the figures are exact as of `asOf`; `rollupPending` interactions were not rolled up
    # yet (the background roll-up lags by about a second) and were counted from their rows.
    as_of: UtcDatetime | None = None
    rollup_pending: int = 0
    # A holdout group: both groups' conversion rates and the lift (README "Holdout groups").
    holdout: Lift | None = None
    # An A/B test: each variant's counts and rates, and the decision (README "A/B tests").
    by_variant: list[dict[str, Any]] | None = None
    ab_decision: dict[str, Any] | None = None
    # Honest engagement (README "Honest engagement"): distinct recipients with an open (click) that
    # was not a machine's, and those whose opens (clicks) were all a machine's, so human + machine =
    # openedCount (clickedCount). The human rates are the seed's formulas on human counts;
    # `rateBasis` says which counts the seed's rates above use (the tenant's policy).
    human_opened_count: int = 0
    machine_opened_count: int = 0
    human_clicked_count: int = 0
    machine_clicked_count: int = 0
    human_open_rate: float | None = None
    human_click_rate: float | None = None
    human_conversion_rate: float | None = None
    rate_basis: RateBasis = RateBasis.ALL


class InteractionPublic(ApiOut):
    id: str
    customer_id: str
    customer_email: str | None
    customer_name: str | None
    type: InteractionType
    channel: Channel
    occurred_at: UtcDatetime
    metadata: dict[str, Any]
    # Opens and clicks: `human` | `machine` and why (core.engagement); null for other types and for
    # opens and clicks reported by a provider's webhook (counted as human).
    class_: EngagementClass | None = Field(None, alias="class")
    class_reason: str | None = None


class InteractionsPublic(ApiOut):
    data: list[InteractionPublic]
    meta: PageMeta
