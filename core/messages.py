"""Inputs, results and state of the campaign workflow and its activities.

Pure pydantic models (no I/O) shared by the API, the worker and the workflow sandbox. One input
object per workflow and per activity, so fields can be added without breaking running campaigns.
"""

from datetime import datetime

from pydantic import BaseModel, Field

from core.enums import CampaignStatus, CampaignType


class Counts(BaseModel):
    """Ledger outcomes of completed pages (messages, per channel summed)."""

    sent: int = 0
    skipped: int = 0
    failed: int = 0
    bounced: int = 0
    unknown: int = 0

    def plus(self, other: "Counts") -> "Counts":
        return Counts(
            sent=self.sent + other.sent,
            skipped=self.skipped + other.skipped,
            failed=self.failed + other.failed,
            bounced=self.bounced + other.bounced,
            unknown=self.unknown + other.unknown,
        )


class CampaignState(BaseModel):
    """Everything the workflow knows; carried whole across continue-as-new."""

    status: CampaignStatus = CampaignStatus.DRAFT
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    paused_at: datetime | None = None
    resumed_at: datetime | None = None
    cancelled_at: datetime | None = None
    completed_at: datetime | None = None
    target_count: int | None = None
    run_number: int = 0
    snapshot_cursor: str | None = None
    snapshot_complete: bool = False
    send_cursor: str | None = None
    # Bumped on every pause/cancel so a halt reaches only the batches started before it.
    epoch: int = 1
    processed: int = 0
    counts: Counts = Field(default_factory=Counts)
    sent_recipients: int = 0
    last_error: str | None = None
    version: int = 1
    discarded: bool = False


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


# ---- updates -------------------------------------------------------------------------------


class ScheduleRequest(BaseModel):
    scheduled_at: datetime


class EditRequest(BaseModel):
    """DRAFT-only fields; applied by the workflow so they cannot race a start of sending."""

    segment_id: str | None = None
    email_template_id: str | None = None
    sms_template_id: str | None = None
    channels: list[str] | None = None
    fields_set: list[str] = Field(default_factory=list)


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


# ---- activities ----------------------------------------------------------------------------


class CheckCampaignInput(BaseModel):
    campaign_id: str
    tenant_id: str


class CheckCampaignResult(BaseModel):
    ok: bool
    problems: list[str] = Field(default_factory=list)
    segment_size: int = 0


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


class SendBatchResult(BaseModel):
    page_complete: bool
    exhausted: bool
    next_cursor: str | None
    recipients: int
    counts: Counts
    sent_recipients: int


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
