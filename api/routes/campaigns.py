"""Campaign endpoints: CRUD on the read model, lifecycle calls translated to workflow updates."""

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel
from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from api.approvals import require_approval, withdraw_approval
from api.auth import Principal
from api.deps import AppState, ConnDep, ControlDep, PrincipalDep, StateDep
from api.errors import Problem, invalid, not_found
from api.experiments import check_ab_test
from api.lifecycle import CampaignControl
from api.schemas.campaigns import (
    CampaignCreate,
    CampaignPublic,
    CampaignsPublic,
    CampaignSummary,
    CampaignUpdate,
    CancelResponse,
    ExecuteResponse,
    PauseResponse,
    RecipientPublic,
    RecipientsPublic,
    ResumeResponse,
    ScheduleBody,
    ScheduleIn,
    ScheduleResponse,
    WavePublic,
)
from api.schemas.common import PageMeta
from core.enums import CampaignStatus, CampaignType, Channel, Outcome
from core.ids import new_id
from core.messages import EditRequest, ScheduleRequest, TransitionResult
from db import policies
from db.campaign_counts import rate, recipient_counts
from db.ledger import reads
from db.models import Campaign, Segment, Template

router = APIRouter(prefix="/campaigns", tags=["campaigns"])

Skip = Annotated[int, Query(ge=0, le=10_000_000)]
Take = Annotated[int, Query(ge=1, le=1000)]
FINAL = (CampaignStatus.COMPLETED.value, CampaignStatus.CANCELLED.value)


# ---- helpers ----------------------------------------------------------------------------------


async def load_campaign(conn: AsyncConnection, principal: Principal, campaign_id: str) -> dict[str, Any]:
    """A campaign of one of the caller's tenants, else 404 exactly as if it did not exist."""
    if "\x00" in campaign_id:
        raise not_found("campaign", campaign_id.replace("\x00", ""))
    row = (
        (
            await conn.execute(
                select(Campaign.__table__).where(
                    Campaign.id == campaign_id, Campaign.tenant_id.in_(principal.tenants)
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise not_found("campaign", campaign_id)
    return dict(row)


async def check_references(
    conn: AsyncConnection,
    tenant_id: str,
    segment_id: str | None,
    email_template_id: str | None,
    sms_template_id: str | None,
) -> None:
    """Referenced objects must exist in the campaign's tenant (else 422, never a leak)."""
    errors: list[dict[str, str]] = []
    if segment_id is not None:
        found = (
            await conn.execute(
                select(Segment.id).where(Segment.id == segment_id, Segment.tenant_id == tenant_id)
            )
        ).first()
        if found is None:
            errors.append({"path": "$.segmentId", "message": "segment not found in this tenant"})
    for path, template_id, channel in (
        ("$.emailTemplateId", email_template_id, Channel.EMAIL),
        ("$.smsTemplateId", sms_template_id, Channel.SMS),
    ):
        if template_id is None:
            continue
        found_channel = (
            await conn.execute(
                select(Template.channel).where(Template.id == template_id, Template.tenant_id == tenant_id)
            )
        ).scalar_one_or_none()
        if found_channel is None:
            errors.append({"path": path, "message": "template not found in this tenant"})
        elif found_channel != channel:
            errors.append({"path": path, "message": f"template is for channel {found_channel}"})
    if errors:
        raise Problem(422, "the campaign refers to objects it cannot use", errors=errors)


async def to_public(conn: AsyncConnection, row: dict[str, Any]) -> CampaignPublic:
    counts = (await recipient_counts(conn, [row["id"]]))[row["id"]]
    segment_name = None
    if row["segment_id"]:
        segment_name = (
            await conn.execute(
                select(Segment.name).where(
                    Segment.id == row["segment_id"], Segment.tenant_id == row["tenant_id"]
                )
            )
        ).scalar_one_or_none()
    return CampaignPublic(
        id=row["id"],
        tenant_id=row["tenant_id"],
        club_id=row["club_id"],
        name=row["name"],
        description=row["description"],
        type=row["type"],
        status=row["status"],
        channels=row["channels"],
        segment_id=row["segment_id"],
        segment_name=segment_name,
        email_template_id=row["email_template_id"],
        sms_template_id=row["sms_template_id"],
        scheduled_at=row["scheduled_at"],
        timezone=row["timezone"],
        target_count=row["target_count"],
        sent_count=counts.sent,
        delivered_count=counts.delivered,
        opened_count=counts.opened,
        clicked_count=counts.clicked,
        converted_count=counts.converted,
        unsubscribed_count=counts.unsubscribed,
        bounced_count=counts.bounced,
        failed_count=counts.failed,
        skipped_count=row["skipped_count"],
        unknown_count=row["unknown_count"],
        open_rate=rate(counts.opened, counts.delivered),
        conversion_event=row["conversion_event"],
        conversion_window_hours=row["conversion_window_hours"],
        schedule=row["schedule"],
        next_run_at=row["next_run_at"],
        last_run_at=row["last_run_at"],
        run_count=row["run_count"],
        trigger_event=row["trigger_event"],
        trigger_conditions=row["trigger_conditions"],
        policy=row.get("policy"),
        deliver_at=row.get("deliver_at"),
        holdout_percent=row.get("holdout_percent") or 0.0,
        ab_test=row.get("ab_test"),
        ab_winner=row.get("ab_winner"),
        expected_finish_at=row.get("expected_finish_at") if row["status"] == "ACTIVE" else None,
        approved_by=row.get("approved_by"),
        approved_at=row.get("approved_at"),
        waves=[WavePublic(at=w.at, held=w.held) for w in await policies.waves(conn, row["id"])]
        if row.get("deliver_at")
        else None,
        last_error=row["last_error"],
        started_at=row["started_at"],
        paused_at=row["paused_at"],
        resumed_at=row["resumed_at"],
        cancelled_at=row["cancelled_at"],
        completed_at=row["completed_at"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _dumped(model: BaseModel | None) -> dict[str, Any] | None:
    return None if model is None else model.model_dump(mode="json", by_alias=True)


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


def check_type_fields(kind: CampaignType, fields: set[str], body: CampaignCreate | CampaignUpdate) -> None:
    """422 for a field the campaign type does not use, or a required one missing (on create)."""
    errors: list[dict[str, str]] = []
    for name in sorted(fields & (ALL_TYPE_FIELDS - TYPE_FIELDS[kind])):
        if getattr(body, name) is not None:
            errors.append({"path": f"$.{CAMEL[name]}", "message": f"not used by {kind.value} campaigns"})
    if isinstance(body, CampaignCreate):
        if kind == CampaignType.RECURRING and body.schedule is None:
            errors.append({"path": "$.schedule", "message": "a RECURRING campaign needs a schedule"})
        if kind == CampaignType.TRIGGERED:
            if body.trigger_event is None:
                errors.append(
                    {"path": "$.triggerEvent", "message": "a TRIGGERED campaign needs a triggerEvent"}
                )
            if body.segment_id is not None:
                errors.append(
                    {"path": "$.segmentId", "message": "TRIGGERED campaigns send to the event's customer"}
                )
    if errors:
        raise Problem(422, "the fields do not fit the campaign type", errors=errors)


def stored_schedule(schedule: ScheduleIn | None, timezone: str) -> dict[str, Any] | None:
    if schedule is None:
        return None
    try:
        return schedule.stored(timezone)
    except ValueError as err:
        raise invalid("$.schedule", str(err)) from None


def _body_hash(body: CampaignCreate) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


# ---- CRUD ---------------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=CampaignPublic,
    response_model_by_alias=True,
    responses={200: {"model": CampaignPublic, "description": "Replay: the campaign of this Idempotency-Key"}},
)
async def create_campaign(
    body: CampaignCreate,
    principal: PrincipalDep,
    state: StateDep,
    control: ControlDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> CampaignPublic:
    principal.require(body.tenant_id)
    check_type_fields(body.type, body.model_fields_set, body)
    schedule = stored_schedule(body.schedule, body.timezone)
    scheduled_at = None
    if body.scheduled_at is not None:
        if body.type == CampaignType.JOURNEY:
            raise invalid("$.scheduledAt", "JOURNEY campaigns are sent by journeys, not scheduled")
        scheduled_at = to_utc(body.scheduled_at, body.timezone)
        if scheduled_at <= datetime.now(UTC):
            raise invalid("$.scheduledAt", "scheduledAt must be in the future")
    digest = _body_hash(body)
    async with state.engine.begin() as conn:
        if idempotency_key:
            # Requests with one key take turns (a lock held until this transaction ends): a
            # concurrent retry then finds the first one's campaign instead of a unique-key error.
            lock = func.hashtextextended(f"{body.tenant_id}\u001f{idempotency_key}", 0)
            await conn.execute(select(func.pg_advisory_xact_lock(lock)))
            existing = await _by_idempotency_key(conn, body.tenant_id, idempotency_key)
            if existing is not None:
                if existing["idempotency_hash"] != digest:
                    raise Problem(409, "Idempotency-Key was already used with a different body")
                response.status_code = 200
                return await to_public(conn, existing)
        await check_references(
            conn, body.tenant_id, body.segment_id, body.email_template_id, body.sms_template_id
        )
        if body.ab_test is not None:
            await check_ab_test(conn, body.tenant_id, body.ab_test, [c.value for c in body.channels])
        campaign_id = new_id("campaign")
        try:
            await conn.execute(
                insert(Campaign).values(
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
                    schedule=schedule,
                    trigger_event=body.trigger_event,
                    trigger_conditions=body.trigger_conditions,
                    policy=body.policy.model_dump(mode="json", by_alias=True) if body.policy else None,
                    deliver_at=_dumped(body.deliver_at),
                    holdout_percent=body.holdout_percent or 0.0,
                    ab_test=_dumped(body.ab_test),
                    created_by=principal.subject,
                    idempotency_key=idempotency_key,
                    idempotency_hash=digest if idempotency_key else None,
                )
            )
        except IntegrityError:
            raise Problem(409, "a concurrent request with the same Idempotency-Key won") from None
    try:
        await control.start(
            campaign_id,
            body.tenant_id,
            body.club_id,
            body.type.value,
            name=body.name,
            created_by=principal.subject,
        )
    except Exception as err:
        async with state.engine.begin() as conn:
            await conn.execute(delete(Campaign).where(Campaign.id == campaign_id))
        raise Problem(503, "the workflow service is unavailable, try again") from err
    if scheduled_at is not None:
        await _schedule_or_undo(campaign_id, scheduled_at, state, control)
    async with state.engine.connect() as conn:
        return await to_public(conn, await load_campaign(conn, principal, campaign_id))


async def _schedule_or_undo(
    campaign_id: str, scheduled_at: datetime, state: AppState, control: CampaignControl
) -> None:
    """`scheduledAt` on create (the seed's type examples carry it) is create + schedule in one
    call; if the schedule is refused, the create is undone, so a refused request changes nothing."""
    try:
        await control.update(
            campaign_id,
            "schedule",
            TransitionResult,
            ScheduleRequest(scheduled_at=scheduled_at),
            status=CampaignStatus.DRAFT.value,
        )
    except Problem:
        await control.update(campaign_id, "discard", TransitionResult, status=CampaignStatus.DRAFT.value)
        async with state.engine.begin() as conn:
            await conn.execute(delete(Campaign).where(Campaign.id == campaign_id))
        raise


async def _by_idempotency_key(conn: AsyncConnection, tenant_id: str, key: str) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                select(Campaign.__table__).where(
                    Campaign.tenant_id == tenant_id, Campaign.idempotency_key == key
                )
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


@router.get("", response_model=CampaignsPublic, response_model_by_alias=True)
async def list_campaigns(
    principal: PrincipalDep,
    conn: ConnDep,
    tenant_id: Annotated[str, Query(alias="tenantId", min_length=1, max_length=100)],
    club_id: Annotated[str | None, Query(alias="clubId", max_length=100)] = None,
    status: CampaignStatus | None = None,
    type: CampaignType | None = None,
    skip: Skip = 0,
    take: Take = 25,
) -> CampaignsPublic:
    principal.require(tenant_id)
    if club_id is not None and "\x00" in club_id:
        raise invalid("query.clubId", "must not contain NUL characters")
    conditions = [Campaign.tenant_id == tenant_id]
    if club_id is not None:
        conditions.append(Campaign.club_id == club_id)
    if status is not None:
        conditions.append(Campaign.status == status.value)
    if type is not None:
        conditions.append(Campaign.type == type.value)
    where = and_(*conditions)
    total = int((await conn.execute(select(func.count()).where(where))).scalar_one())
    rows = (
        (
            await conn.execute(
                select(Campaign.__table__)
                .where(where)
                .order_by(Campaign.created_at.desc(), Campaign.id.desc())
                .offset(skip)
                .limit(take)
            )
        )
        .mappings()
        .all()
    )
    counts = await recipient_counts(conn, [r["id"] for r in rows])
    data = [
        CampaignSummary(
            id=r["id"],
            name=r["name"],
            type=r["type"],
            status=r["status"],
            channels=r["channels"],
            segment_id=r["segment_id"],
            scheduled_at=r["scheduled_at"],
            target_count=r["target_count"],
            sent_count=counts[r["id"]].sent,
            open_rate=rate(counts[r["id"]].opened, counts[r["id"]].delivered),
            created_at=r["created_at"],
        )
        for r in rows
    ]
    return CampaignsPublic(data=data, meta=PageMeta(total=total, skip=skip, take=take))


@router.get("/{campaign_id}", response_model=CampaignPublic, response_model_by_alias=True)
async def get_campaign(campaign_id: str, principal: PrincipalDep, conn: ConnDep) -> CampaignPublic:
    return await to_public(conn, await load_campaign(conn, principal, campaign_id))


DRAFT_ONLY = {
    "segment_id",
    "channels",
    "email_template_id",
    "sms_template_id",
    "schedule",
    "trigger_event",
    "trigger_conditions",
}


@router.patch("/{campaign_id}", response_model=CampaignPublic, response_model_by_alias=True)
async def update_campaign(
    campaign_id: str,
    body: CampaignUpdate,
    principal: PrincipalDep,
    state: StateDep,
    control: ControlDep,
) -> CampaignPublic:
    fields = body.model_fields_set
    for name in ("name", "channels", "timezone"):
        if name in fields and getattr(body, name) is None:
            raise invalid(f"$.{name}", f"{name} cannot be null")
    async with state.engine.connect() as conn:
        row = await load_campaign(conn, principal, campaign_id)
        if row["status"] in FINAL:
            raise Problem(409, f"a {row['status']} campaign is read-only", currentStatus=row["status"])
        check_type_fields(CampaignType(row["type"]), fields, body)
        for name in ("schedule", "trigger_event"):
            if name in fields and getattr(body, name) is None:
                raise invalid(f"$.{CAMEL[name]}", f"{CAMEL[name]} cannot be null")
        schedule = stored_schedule(body.schedule, body.timezone or row["timezone"])
        await check_references(
            conn,
            row["tenant_id"],
            body.segment_id if "segment_id" in fields else None,
            body.email_template_id if "email_template_id" in fields else None,
            body.sms_template_id if "sms_template_id" in fields else None,
        )
    draft_only = fields & DRAFT_ONLY
    if draft_only:
        # Through the workflow, so the change cannot race the start of sending.
        await control.update(
            campaign_id,
            "edit",
            TransitionResult,
            EditRequest(
                segment_id=body.segment_id,
                email_template_id=body.email_template_id,
                sms_template_id=body.sms_template_id,
                channels=[c.value for c in body.channels] if body.channels else None,
                schedule=schedule,
                trigger_event=body.trigger_event,
                trigger_conditions=body.trigger_conditions,
                fields_set=sorted(draft_only),
            ),
            status=row["status"],
        )
    simple: dict[str, Any] = {
        name: getattr(body, name)
        for name in ("name", "description", "timezone", "conversion_event", "conversion_window_hours")
        if name in fields
    }
    if "policy" in fields:
        simple["policy"] = _dumped(body.policy)
    if "deliver_at" in fields:
        if row["status"] not in (CampaignStatus.DRAFT.value, CampaignStatus.SCHEDULED.value):
            raise Problem(409, "deliverAt can change only before sending starts", currentStatus=row["status"])
        simple["deliver_at"] = _dumped(body.deliver_at)
    if "ab_test" in fields:
        if row["status"] != CampaignStatus.DRAFT.value:
            raise Problem(409, "abTest can change only in DRAFT", currentStatus=row["status"])
        if body.ab_test is not None:
            async with state.engine.connect() as conn:
                channels = [c.value for c in body.channels] if body.channels else list(row["channels"])
                await check_ab_test(conn, row["tenant_id"], body.ab_test, channels)
        simple["ab_test"] = _dumped(body.ab_test)
    if "holdout_percent" in fields:
        if row["status"] != CampaignStatus.DRAFT.value:
            raise Problem(409, "holdoutPercent can change only in DRAFT", currentStatus=row["status"])
        simple["holdout_percent"] = body.holdout_percent or 0.0
    async with state.engine.begin() as conn:
        if fields:
            await withdraw_approval(control, conn, row)
        if simple:
            result = await conn.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id, Campaign.status.not_in(FINAL))
                .values(**simple, updated_at=datetime.now(UTC))
            )
            if result.rowcount == 0:
                raise Problem(409, "the campaign became read-only", currentStatus="COMPLETED")
        return await to_public(conn, await load_campaign(conn, principal, campaign_id))


@router.delete("/{campaign_id}", status_code=204)
async def delete_campaign(
    campaign_id: str, principal: PrincipalDep, state: StateDep, control: ControlDep
) -> Response:
    async with state.engine.connect() as conn:
        row = await load_campaign(conn, principal, campaign_id)
    if row["status"] != CampaignStatus.DRAFT:
        raise Problem(
            409,
            f"only DRAFT campaigns can be deleted; this one is {row['status']}",
            currentStatus=row["status"],
        )
    await control.update(campaign_id, "discard", TransitionResult, status=row["status"])
    async with state.engine.begin() as conn:
        await conn.execute(delete(Campaign).where(Campaign.id == campaign_id))
    return Response(status_code=204)


# ---- lifecycle ----------------------------------------------------------------------------------


def to_utc(value: datetime, timezone: str) -> datetime:
    """Input without an offset is read in the campaign's timezone (README "API at a glance")."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(timezone))
    return value.astimezone(UTC)


@router.post("/{campaign_id}/schedule", response_model=ScheduleResponse, response_model_by_alias=True)
async def schedule_campaign(
    campaign_id: str, body: ScheduleBody, principal: PrincipalDep, state: StateDep, control: ControlDep
) -> ScheduleResponse:
    async with state.engine.connect() as conn:
        row = await load_campaign(conn, principal, campaign_id)
        await require_approval(conn, state.settings, row)
    at = to_utc(body.scheduled_at, row["timezone"])
    if at <= datetime.now(UTC):
        raise invalid("$.scheduledAt", "scheduledAt must be in the future")
    r = await control.update(
        campaign_id, "schedule", TransitionResult, ScheduleRequest(scheduled_at=at), status=row["status"]
    )
    return ScheduleResponse(
        id=r.id, status=r.status, scheduled_at=r.scheduled_at, target_count=r.target_count
    )


async def _transition(
    campaign_id: str, action: str, principal: Principal, state: AppState, control: CampaignControl
) -> TransitionResult:
    async with state.engine.connect() as conn:
        row = await load_campaign(conn, principal, campaign_id)
        if action == "execute":
            await require_approval(conn, state.settings, row)
    result: TransitionResult = await control.update(
        campaign_id, action, TransitionResult, status=row["status"]
    )
    return result


@router.post("/{campaign_id}/execute", response_model=ExecuteResponse, response_model_by_alias=True)
async def execute_campaign(
    campaign_id: str, principal: PrincipalDep, state: StateDep, control: ControlDep
) -> ExecuteResponse:
    r = await _transition(campaign_id, "execute", principal, state, control)
    return ExecuteResponse(id=r.id, status=r.status, started_at=r.started_at, target_count=r.target_count)


@router.post("/{campaign_id}/pause", response_model=PauseResponse, response_model_by_alias=True)
async def pause_campaign(
    campaign_id: str, principal: PrincipalDep, state: StateDep, control: ControlDep
) -> PauseResponse:
    r = await _transition(campaign_id, "pause", principal, state, control)
    return PauseResponse(id=r.id, status=r.status, paused_at=r.paused_at, sent_count=r.sent_count)


@router.post("/{campaign_id}/resume", response_model=ResumeResponse, response_model_by_alias=True)
async def resume_campaign(
    campaign_id: str, principal: PrincipalDep, state: StateDep, control: ControlDep
) -> ResumeResponse:
    r = await _transition(campaign_id, "resume", principal, state, control)
    return ResumeResponse(id=r.id, status=r.status, resumed_at=r.resumed_at)


@router.post("/{campaign_id}/cancel", response_model=CancelResponse, response_model_by_alias=True)
async def cancel_campaign(
    campaign_id: str, principal: PrincipalDep, state: StateDep, control: ControlDep
) -> CancelResponse:
    r = await _transition(campaign_id, "cancel", principal, state, control)
    return CancelResponse(id=r.id, status=r.status, cancelled_at=r.cancelled_at, sent_count=r.sent_count)


# ---- the ledger -----------------------------------------------------------------------------------


@router.get("/{campaign_id}/recipients", response_model=RecipientsPublic, response_model_by_alias=True)
async def list_recipients(
    campaign_id: str,
    principal: PrincipalDep,
    conn: ConnDep,
    outcome: Outcome | None = None,
    channel: Channel | None = None,
    customer_id: Annotated[str | None, Query(alias="customerId", max_length=40)] = None,
    skip: Skip = 0,
    take: Take = 25,
) -> RecipientsPublic:
    await load_campaign(conn, principal, campaign_id)
    f = reads.DeliveryFilter(
        outcome=outcome.value if outcome is not None else None,
        channel=channel.value if channel is not None else None,
        customer_id=customer_id,
    )
    total = await reads.count_deliveries(conn, campaign_id, f)
    rows = await reads.page_deliveries(conn, campaign_id, f, skip, take)
    data = [
        RecipientPublic(
            customer_id=r.customer_id,
            channel=r.channel,
            outcome=r.outcome,
            reason=r.reason,
            detail=r.detail,
            address=r.address,
            sent_at=r.sent_at,
            provider_message_id=r.provider_message_id,
            run_id=r.run_id,
            updated_at=r.updated_at,
        )
        for r in rows
    ]
    return RecipientsPublic(data=data, meta=PageMeta(total=total, skip=skip, take=take))
