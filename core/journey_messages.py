"""The messages of journeys (README "Journeys"): the journey workflow's input and steps, and the
contract of the child workflow that sends one campaign to a journey's customers.

Pure pydantic models (no I/O), like core.messages, whose counts they carry.
"""

from datetime import datetime
from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field

from core.messages import Counts

# ---- journeys: the child-workflow contract (README "Journeys") ---------------------------------


class JourneyAudience(BaseModel):
    """Who a child send goes to: explicit customers, or the campaign's segment at send time."""

    customer_ids: list[str] | None = None
    segment: bool = False


class CampaignSendInput(BaseModel):
    """Input of `CampaignSendWorkflow`, the child a journey starts to send a JOURNEY campaign.

    `send_key` names this send (e.g. "<journey workflow id>/step-3"): the same key is the same
    run, so a retried or re-started child never sends twice.
    """

    campaign_id: str
    tenant_id: str
    send_key: str
    audience: JourneyAudience


class CampaignSendResult(BaseModel):
    run_id: str
    target_count: int
    counts: Counts
    sent_customer_ids: list[str] = Field(default_factory=list)


class PrepareSendInput(BaseModel):
    campaign_id: str
    tenant_id: str
    run_id: str
    send_key: str
    audience: JourneyAudience


class PrepareSendResult(BaseModel):
    target_count: int


class RunSummaryInput(BaseModel):
    run_id: str
    campaign_id: str


class RunSummary(BaseModel):
    counts: Counts
    sent_customer_ids: list[str]


class EngagementInput(BaseModel):
    campaign_id: str
    customer_id: str
    run_id: str | None = None


class Engagement(BaseModel):
    opened: bool
    clicked: bool


class EventSeenInput(BaseModel):
    tenant_id: str
    customer_id: str
    event_type: str
    since: datetime


class SendStep(BaseModel):
    kind: Literal["send"] = "send"
    campaign_id: str
    # "customer": the journey's customer; "segment": the campaign's whole segment (a broadcast
    # step of a journey, e.g. "remind everyone in the segment").
    audience: Literal["customer", "segment"] = "customer"


class WaitStep(BaseModel):
    kind: Literal["wait"] = "wait"
    seconds: float = Field(ge=0)


class WaitForEventStep(BaseModel):
    kind: Literal["wait_for_event"] = "wait_for_event"
    event_type: str
    timeout_seconds: float = Field(gt=0)
    # How often the journey looks for the event in the event store (a signal wakes it at once).
    poll_seconds: float = Field(default=60, gt=0)


class BranchStep(BaseModel):
    """Branch on what the customer did: opened/clicked the last send, or the last awaited event."""

    kind: Literal["branch"] = "branch"
    on: Literal["opened", "clicked", "event"]
    then: list["JourneyStep"] = Field(default_factory=list)
    otherwise: list["JourneyStep"] = Field(default_factory=list)


JourneyStep = Annotated[
    Union[SendStep, WaitStep, WaitForEventStep, BranchStep],  # noqa: UP007
    Field(discriminator="kind"),
]
BranchStep.model_rebuild()


class JourneyInput(BaseModel):
    journey_id: str
    tenant_id: str
    customer_id: str
    steps: list[JourneyStep]


class JourneyResult(BaseModel):
    """What the journey did, step by step ("send campaign_x: SENT", "branch opened: then", ...)."""

    path: list[str]
    sends: list[CampaignSendResult]
