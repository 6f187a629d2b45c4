"""Inputs, results and state of the campaign workflow and its activities.

Pure pydantic models (no I/O) shared by the API, the worker and the workflow sandbox. One input
object per workflow and per activity, so fields can be added without breaking running campaigns.
"""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

# The workflow's state and the ledger counts live in core/campaign_state.py; re-exported here, where
# the workflows, activities and API have always imported them from.
from core.campaign_state import CampaignState as CampaignState
from core.campaign_state import Counts as Counts
from core.enums import CampaignStatus, CampaignType
from core.policy import AutoPause
from core.recurrence import RecurringSchedule


class CampaignWorkflowInput(BaseModel):
    campaign_id: str
    tenant_id: str
    club_id: str | None = None
    type: CampaignType = CampaignType.ONE_TIME
    # Batches per workflow run before continue-as-new keeps the history bounded.
    batches_per_run: int = 200
    state: CampaignState | None = None


class CampaignProgress(BaseModel):
    """The `progress` query: live status and counts."""

    campaign_id: str
    status: CampaignStatus
    target_count: int | None
    processed: int
    sent_recipients: int
    counts: Counts
    snapshot_complete: bool
    batch_running: bool
    scheduled_at: datetime | None
    last_error: str | None
    # Messages waiting for a local-time wave or a quiet window's end, and the earliest's instant.
    held: int = 0
    held_until: datetime | None = None
    # At the rate limits' current pace (README "Rate limits"); None when nothing is limited.
    expected_finish_at: datetime | None = None


# ---- updates -------------------------------------------------------------------------------


class ScheduleRequest(BaseModel):
    scheduled_at: datetime


class EditRequest(BaseModel):
    """DRAFT-only fields; applied by the workflow so they cannot race a start of sending."""

    segment_id: str | None = None
    email_template_id: str | None = None
    sms_template_id: str | None = None
    channels: list[str] | None = None
    schedule: dict[str, Any] | None = None
    trigger_event: str | None = None
    trigger_conditions: dict[str, Any] | None = None
    fields_set: list[str] = Field(default_factory=list)
    # The plain columns the same PATCH sets (name, description...), written in the same
    # transaction, so an update is applied whole or not at all.
    columns: dict[str, Any] = Field(default_factory=dict)


class ApprovalRequest(BaseModel):
    """`by`: the approving user; None withdraws the approval (the campaign was edited)."""

    by: str | None


class TransitionResult(BaseModel):
    """What a lifecycle update returns: the state actually reached."""

    id: str
    status: CampaignStatus
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    paused_at: datetime | None = None
    resumed_at: datetime | None = None
    cancelled_at: datetime | None = None
    target_count: int | None = None
    sent_count: int = 0
    approved_by: str | None = None
    approved_at: datetime | None = None


# ---- activities ----------------------------------------------------------------------------


class CheckCampaignInput(BaseModel):
    campaign_id: str
    tenant_id: str


class CheckCampaignResult(BaseModel):
    ok: bool
    problems: list[str] = Field(default_factory=list)
    segment_size: int = 0
    schedule: RecurringSchedule | None = None


class SyncCampaignInput(BaseModel):
    campaign_id: str
    version: int
    state: CampaignState


class ApplyEditInput(BaseModel):
    campaign_id: str
    tenant_id: str
    edit: EditRequest


class SnapshotInput(BaseModel):
    campaign_id: str
    tenant_id: str
    run_id: str
    run_number: int
    after: str | None


class SnapshotResult(BaseModel):
    last_customer_id: str | None
    inserted: int
    done: bool
    target_count: int


class SendBatchInput(BaseModel):
    campaign_id: str
    tenant_id: str
    run_id: str
    after: str | None
    epoch: int
    # A planned page: recipients in (after, upto], at most `limit` (None: the worker's batch size).
    upto: str | None = None
    limit: int | None = None
    # The workflow's clock when it started the page: quiet hours are judged at this instant, so a
    # time-skipping test and a replay see the same windows (None: the worker's clock).
    now: datetime | None = None
    # When the send (or the RECURRING run) started: recipient-local delivery counts from it.
    anchor: datetime | None = None


class PlanPagesInput(BaseModel):
    run_id: str
    after: str | None
    pages: int
    # Recipients of the whole run (its snapshot), which sizes its pages; None (histories from
    # before it was sent, or a snapshot still being taken): pages of `batch_size`.
    run_size: int | None = None
    # The snapshot is still being taken and its chunks are final up to this customer id: plan
    # only whole pages up to it (the last, partial one waits for more), and never say exhausted.
    snapshot_upto: str | None = None


class PlanPagesResult(BaseModel):
    """Upper bounds (inclusive customer ids) of the next pages, each `page_size` recipients."""

    bounds: list[str]
    page_size: int
    exhausted: bool
    window: int


class SendBatchResult(BaseModel):
    page_complete: bool
    exhausted: bool
    next_cursor: str | None
    recipients: int
    counts: Counts
    sent_recipients: int
    # Messages quiet hours held back on this page, and when the earliest of the campaign's held
    # messages is due (README "Sending policies").
    held: int = 0
    held_until: datetime | None = None
    # The campaign's auto-pause rule as the page read it (None: off), and what it judges: the
    # provider's answers on this attempt and how many were refusals (bounced or failed).
    auto_pause: AutoPause | None = None
    answered: int = 0
    refused: int = 0
    # An A/B test's remainder waits for the winner (the workflow decides when the test ends).
    awaiting_winner: bool = False
    # The tenant's current share of its rate-limited provider accounts, messages per second on
    # the slowest of the campaign's channels (None: no channel is limited).
    rate: float | None = None


class SendHeldInput(BaseModel):
    """A sweep of the messages quiet hours held back: those due at `now` (workflow time)."""

    campaign_id: str
    tenant_id: str
    # The run whose halt epoch pause and cancel raise (the current run, or a TRIGGERED
    # campaign's control run).
    run_id: str
    epoch: int
    sweep: int
    now: datetime
    anchor: datetime | None = None


class DecideInput(BaseModel):
    """End an A/B test's test phase: decide the winner, or take the operator's `forced` pick."""

    campaign_id: str
    tenant_id: str
    forced: str | None = None
    # The workflow's clock: the held remainder becomes due at this instant.
    now: datetime | None = None


class DecideResult(BaseModel):
    winner: str


class WinnerRequest(BaseModel):
    variant: str


class HaltInput(BaseModel):
    run_id: str
    epoch: int


class FinishRunInput(BaseModel):
    run_id: str


class ResendInput(BaseModel):
    campaign_id: str
    tenant_id: str
    after: str | None = None


class ResendResult(BaseModel):
    next_after: str | None
    resent: int
    done: bool


class NextRunInput(BaseModel):
    schedule: RecurringSchedule
    after: datetime


class NextRunResult(BaseModel):
    at: datetime | None


class LedgerCountsInput(BaseModel):
    campaign_id: str


class CloseTriggersInput(BaseModel):
    campaign_id: str
