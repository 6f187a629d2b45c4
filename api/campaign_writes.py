"""What a create or a PATCH of a campaign may write, checked before anything is written.

Each function here either answers a problem (422 for input that cannot be used, 409 for a change
the campaign's status forbids) or returns what to write; nothing here writes. The writing is
api.campaign_create (create) and `apply_update` (PATCH): a PATCH is one Update of the workflow when
it sets a DRAFT-only field (every field it sets travels in that Update and is written in one
transaction), else one transaction.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.approvals import withdraw_approval
from api.auth import Principal
from api.errors import Problem, invalid
from api.experiments import check_ab_test
from api.lifecycle import CampaignControl
from api.schemas.campaigns import CampaignCreate, CampaignUpdate, ScheduleIn
from api.tenant_workspace import check_campaign_identity
from core.enums import CampaignStatus, CampaignType, Channel
from core.messages import EditRequest, TransitionResult
from db.campaign_state import EDITABLE
from db.campaigns import FINAL_STATUSES, CampaignRow, NewCampaign, owned_campaign, update_plain_fields
from db.segments import owned_segment
from db.templates import template_channel

# Which type-specific fields each campaign type takes (README "Campaign types").
TYPE_FIELDS: dict[CampaignType, set[str]] = {
    CampaignType.ONE_TIME: {"deliver_at", "ab_test"},
    CampaignType.RECURRING: {"schedule", "deliver_at"},
    CampaignType.TRIGGERED: {"trigger_event", "trigger_conditions"},
    CampaignType.JOURNEY: set(),
}
ALL_TYPE_FIELDS = {"schedule", "trigger_event", "trigger_conditions", "deliver_at", "ab_test"}
CAMEL = {
    "schedule": "schedule",
    "trigger_event": "triggerEvent",
    "trigger_conditions": "triggerConditions",
    "deliver_at": "deliverAt",
    "ab_test": "abTest",
}
# Fields a PATCH may not set to null, and the fields only a DRAFT campaign may change (through
# the workflow, so the change cannot race the start of sending).
NOT_NULL = ("name", "channels", "timezone")
DRAFT_ONLY = frozenset(EDITABLE)
# The plain fields a PATCH copies as they are; the others are checked against the status first.
COPIED = ("name", "description", "timezone", "conversion_event", "conversion_window_hours")


def dumped(model: BaseModel | None) -> dict[str, Any] | None:
    return None if model is None else model.model_dump(mode="json", by_alias=True)


def to_utc(value: datetime, timezone: str) -> datetime:
    """Input without an offset is read in the campaign's timezone (README "API at a glance")."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(timezone))
    return value.astimezone(UTC)


def future(value: datetime, timezone: str) -> datetime:
    """`value` in UTC, or a 422 when it is not in the future."""
    at = to_utc(value, timezone)
    if at <= datetime.now(UTC):
        raise invalid("$.scheduledAt", "scheduledAt must be in the future")
    return at


def check_type_fields(kind: CampaignType, fields: set[str], body: CampaignCreate | CampaignUpdate) -> None:
    """422 for a field the campaign type does not use, or a required one missing (on create)."""
    errors: list[dict[str, str]] = []
    for name in sorted(fields & (ALL_TYPE_FIELDS - TYPE_FIELDS[kind])):
        if getattr(body, name) is not None:
            errors.append({"path": f"$.{CAMEL[name]}", "message": f"not used by {kind.value} campaigns"})
    if isinstance(body, CampaignCreate):
        errors.extend(_missing_for_type(kind, body))
    if errors:
        raise Problem(422, "the fields do not fit the campaign type", errors=errors)


def _missing_for_type(kind: CampaignType, body: CampaignCreate) -> list[dict[str, str]]:
    errors = []
    if kind == CampaignType.RECURRING and body.schedule is None:
        errors.append({"path": "$.schedule", "message": "a RECURRING campaign needs a schedule"})
    if kind == CampaignType.TRIGGERED and body.trigger_event is None:
        errors.append({"path": "$.triggerEvent", "message": "a TRIGGERED campaign needs a triggerEvent"})
    if kind == CampaignType.TRIGGERED and body.segment_id is not None:
        errors.append({"path": "$.segmentId", "message": "TRIGGERED campaigns send to the event's customer"})
    return errors


def stored_schedule(schedule: ScheduleIn | None, timezone: str) -> dict[str, Any] | None:
    if schedule is None:
        return None
    try:
        return schedule.stored(timezone)
    except ValueError as err:
        raise invalid("$.schedule", str(err)) from None


async def check_references(
    conn: AsyncConnection,
    tenant_id: str,
    segment_id: str | None,
    email_template_id: str | None,
    sms_template_id: str | None,
) -> None:
    """Referenced objects must exist in the campaign's tenant (else 422, never a leak)."""
    errors: list[dict[str, str]] = []
    if segment_id is not None and await owned_segment(conn, [tenant_id], segment_id) is None:
        errors.append({"path": "$.segmentId", "message": "segment not found in this tenant"})
    for path, template_id, channel in (
        ("$.emailTemplateId", email_template_id, Channel.EMAIL),
        ("$.smsTemplateId", sms_template_id, Channel.SMS),
    ):
        if template_id is None:
            continue
        found_channel = await template_channel(conn, tenant_id, template_id)
        if found_channel is None:
            errors.append({"path": path, "message": "template not found in this tenant"})
        elif found_channel != channel:
            errors.append({"path": path, "message": f"template is for channel {found_channel}"})
    if errors:
        raise Problem(422, "the campaign refers to objects it cannot use", errors=errors)


# ---- create -------------------------------------------------------------------------------------


def body_hash(body: CampaignCreate) -> str:
    """What an Idempotency-Key's replay must match: the whole request body."""
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def checked_schedule_at(body: CampaignCreate) -> datetime | None:
    """The checks of a create's fields among themselves (422), and its `scheduledAt` in UTC
    (None when not given)."""
    check_type_fields(body.type, body.model_fields_set, body)
    stored_schedule(body.schedule, body.timezone)
    if body.scheduled_at is None:
        return None
    if body.type == CampaignType.JOURNEY:
        raise invalid("$.scheduledAt", "JOURNEY campaigns are sent by journeys, not scheduled")
    return future(body.scheduled_at, body.timezone)


async def check_create(conn: AsyncConnection, body: CampaignCreate) -> None:
    """The create's references exist in its tenant and fit (else 422)."""
    await check_references(
        conn, body.tenant_id, body.segment_id, body.email_template_id, body.sms_template_id
    )
    if body.ab_test is not None:
        await check_ab_test(conn, body.tenant_id, body.ab_test, [c.value for c in body.channels])
    await check_campaign_identity(conn, body.tenant_id, body.sender_identity_id, body.channels)


def new_campaign(
    campaign_id: str, body: CampaignCreate, principal: Principal, key: str | None, digest: str
) -> NewCampaign:
    """The row a create writes, in DRAFT (the workflow it starts begins there too)."""
    return NewCampaign(
        id=campaign_id,
        tenant_id=body.tenant_id,
        club_id=body.club_id,
        name=body.name,
        description=body.description,
        type=body.type.value,
        status=CampaignStatus.DRAFT.value,
        channels=[c.value for c in body.channels],
        segment_id=body.segment_id,
        email_template_id=body.email_template_id,
        sms_template_id=body.sms_template_id,
        timezone=body.timezone,
        conversion_event=body.conversion_event,
        conversion_window_hours=body.conversion_window_hours,
        schedule=stored_schedule(body.schedule, body.timezone),
        trigger_event=body.trigger_event,
        trigger_conditions=body.trigger_conditions,
        policy=dumped(body.policy),
        deliver_at=dumped(body.deliver_at),
        holdout_percent=body.holdout_percent or 0.0,
        ab_test=dumped(body.ab_test),
        sender_identity_id=body.sender_identity_id,
        created_by=principal.subject,
        idempotency_key=key,
        idempotency_hash=digest if key else None,
    )


# ---- update -------------------------------------------------------------------------------------


@dataclass
class UpdatePlan:
    """A checked PATCH: the DRAFT-only edit for the workflow (None: none) and the plain columns."""

    edit: EditRequest | None = None
    plain: dict[str, Any] = field(default_factory=dict)


def check_not_null(body: CampaignUpdate) -> None:
    for name in NOT_NULL:
        if name in body.model_fields_set and getattr(body, name) is None:
            raise invalid(f"$.{name}", f"{name} cannot be null")


async def plan_update(conn: AsyncConnection, row: CampaignRow, body: CampaignUpdate) -> UpdatePlan:
    """Every check of a PATCH, before anything is written: what to write, or the problem."""
    fields = body.model_fields_set
    if row.status in FINAL_STATUSES:
        raise Problem(409, f"a {row.status} campaign is read-only", currentStatus=row.status)
    check_type_fields(CampaignType(row.type), fields, body)
    for name in ("schedule", "trigger_event"):
        if name in fields and getattr(body, name) is None:
            raise invalid(f"$.{CAMEL[name]}", f"{CAMEL[name]} cannot be null")
    schedule = stored_schedule(body.schedule, body.timezone or row.timezone)
    await check_references(
        conn,
        row.tenant_id,
        body.segment_id if "segment_id" in fields else None,
        body.email_template_id if "email_template_id" in fields else None,
        body.sms_template_id if "sms_template_id" in fields else None,
    )
    plan = UpdatePlan(plain={name: getattr(body, name) for name in COPIED if name in fields})
    if "policy" in fields:
        plan.plain["policy"] = dumped(body.policy)
    await _plan_sending_fields(conn, row, body, plan)
    draft_only = fields & DRAFT_ONLY
    if draft_only:
        plan.edit = EditRequest(
            segment_id=body.segment_id,
            email_template_id=body.email_template_id,
            sms_template_id=body.sms_template_id,
            channels=[c.value for c in body.channels] if body.channels else None,
            schedule=schedule,
            trigger_event=body.trigger_event,
            trigger_conditions=body.trigger_conditions,
            fields_set=sorted(draft_only),
            columns=plan.plain,
        )
    return plan


def _require_status(
    row: CampaignRow, field_name: str, allowed: tuple[CampaignStatus, ...], when: str
) -> None:
    if row.status not in allowed:
        raise Problem(409, f"{field_name} can change only {when}", currentStatus=row.status)


async def _plan_sending_fields(
    conn: AsyncConnection, row: CampaignRow, body: CampaignUpdate, plan: UpdatePlan
) -> None:
    """deliverAt, abTest and holdoutPercent: how a send goes out, fixed once sending starts."""
    fields = body.model_fields_set
    draft = (CampaignStatus.DRAFT,)
    if "deliver_at" in fields:
        _require_status(row, "deliverAt", (*draft, CampaignStatus.SCHEDULED), "before sending starts")
        plan.plain["deliver_at"] = dumped(body.deliver_at)
    if "ab_test" in fields:
        _require_status(row, "abTest", draft, "in DRAFT")
        if body.ab_test is not None:
            channels = [c.value for c in body.channels] if body.channels else list(row.channels)
            await check_ab_test(conn, row.tenant_id, body.ab_test, channels)
        plan.plain["ab_test"] = dumped(body.ab_test)
    if "holdout_percent" in fields:
        _require_status(row, "holdoutPercent", draft, "in DRAFT")
        plan.plain["holdout_percent"] = body.holdout_percent or 0.0
    if "sender_identity_id" in fields:  # any status but a final one: the next page sends as it
        sending = [c.value for c in body.channels] if body.channels else list(row.channels)
        await check_campaign_identity(conn, row.tenant_id, body.sender_identity_id, sending)
        plan.plain["sender_identity_id"] = body.sender_identity_id


async def apply_update(
    engine: AsyncEngine, control: CampaignControl, row: CampaignRow, plan: UpdatePlan, *, any_field: bool
) -> None:
    """Write a checked PATCH: everything in the workflow's one `edit` Update when it has a
    DRAFT-only field, else in one transaction; an approval is withdrawn with it (the approver saw
    something else)."""
    if plan.edit is not None:
        await control.update(row.id, "edit", TransitionResult, plan.edit, status=row.status)
        async with engine.begin() as conn:
            await withdraw_approval(control, conn, row.as_mapping())
        return
    async with engine.begin() as conn:
        if any_field:
            await withdraw_approval(control, conn, row.as_mapping())
        if plan.plain and not await update_plain_fields(conn, row.id, plan.plain):
            now = await owned_campaign(conn, [row.tenant_id], row.id)
            status = now.status if now is not None else row.status
            raise Problem(409, "the campaign became read-only", currentStatus=status)
