"""Campaign endpoints: CRUD on the read model, lifecycle calls translated to workflow updates.

The routes are thin: what a create or a PATCH may write is checked in api.campaign_writes, a
create runs through api.campaign_create (row first, then an idempotent workflow start), and the
answer is built by api.campaign_views.
"""

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api import campaign_create
from api.approvals import require_approval
from api.auth import Principal
from api.campaign_views import public_of, to_page, to_public, waves_of
from api.campaign_writes import apply_update, check_not_null, future, plan_update
from api.deps import (
    CAMPAIGN,
    AppState,
    ConnDep,
    ControlDep,
    OwnedCampaign,
    PrincipalDep,
    ReadConnDep,
    StateDep,
    found,
    get_owned,
    hot_read,
    json_response,
    refuse_unstorable_id,
    single_statement,
)
from api.errors import Problem
from api.lifecycle import CampaignControl
from api.schemas.campaigns import (
    CampaignCreate,
    CampaignPublic,
    CampaignsPublic,
    CampaignUpdate,
    CancelResponse,
    ExecuteResponse,
    PauseResponse,
    RecipientsPublic,
    ResumeResponse,
    ScheduleBody,
    ScheduleResponse,
)
from api.schemas.common import ClubIdQuery, PageWindow, TenantIdQuery, paginate
from core.enums import CampaignStatus, CampaignType, Channel, Outcome
from core.messages import ScheduleRequest, TransitionResult
from db.campaigns import FINAL_STATUSES, CampaignFilter, CampaignRow, campaign_page
from db.campaigns import delete_campaign as delete_row
from db.hot_reads import campaign_view
from db.ledger import reads
from db.pages import Slice

router = APIRouter(prefix="/campaigns", tags=["campaigns"])

FINAL = FINAL_STATUSES


async def load_campaign(conn: AsyncConnection, principal: Principal, campaign_id: str) -> dict[str, Any]:
    """A campaign of one of the caller's tenants as a mapping of its columns, else 404 exactly as
    if it did not exist (for the routes that read a campaign that way)."""
    # A shallow copy (as_mapping deep-copies every JSON column: a polled read pays for it).
    return dict(vars(await get_owned(CAMPAIGN, campaign_id, principal.tenants, conn)))


async def _owned(engine: AsyncEngine, principal: Principal, campaign_id: str) -> CampaignRow:
    async with engine.connect() as conn:
        return await get_owned(CAMPAIGN, campaign_id, principal.tenants, conn)


async def _public(engine: AsyncEngine, principal: Principal, campaign_id: str) -> CampaignPublic:
    async with engine.connect() as conn:
        return await to_public(conn, await get_owned(CAMPAIGN, campaign_id, principal.tenants, conn))


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
    created = await campaign_create.create_campaign(state.engine, control, principal, body, idempotency_key)
    if created.replayed:
        response.status_code = 200
    return await _public(state.engine, principal, created.row.id)


@router.get("", response_model=CampaignsPublic, response_model_by_alias=True)
async def list_campaigns(
    principal: PrincipalDep,
    conn: ReadConnDep,
    tenant_id: TenantIdQuery,
    window: PageWindow,
    club_id: ClubIdQuery = None,
    status: CampaignStatus | None = None,
    type: CampaignType | None = None,
) -> Response:
    principal.require(tenant_id)
    where = CampaignFilter(
        tenant_id,
        club_id=club_id,
        status=status.value if status is not None else None,
        type=type.value if type is not None else None,
    )
    return json_response(await to_page(conn, await campaign_page(conn, where, window), window))


@router.get("/{campaign_id}", response_model=CampaignPublic, response_model_by_alias=True)
async def get_campaign(campaign_id: str, principal: PrincipalDep, state: StateDep) -> Response:
    """The hottest read (dashboards poll it): one statement without a transaction, serialised once
    (db.hot_reads); a campaign of another tenant is the 404 of a missing one, as everywhere."""
    refuse_unstorable_id(CAMPAIGN.name, campaign_id)
    read = partial(campaign_view, tenants=principal.tenants, campaign_id=campaign_id)
    view = found(CAMPAIGN.name, campaign_id, await hot_read(state, read))
    waves = None
    if view.row.deliver_at:  # only a campaign that delivers in waves has them: a second statement
        async with single_statement(state) as conn:
            waves = await waves_of(conn, view.row)
    return json_response(public_of(view.row, view.counts, view.segment_name, waves))


@router.patch("/{campaign_id}", response_model=CampaignPublic, response_model_by_alias=True)
async def update_campaign(
    campaign_id: str,
    body: CampaignUpdate,
    principal: PrincipalDep,
    state: StateDep,
    control: ControlDep,
) -> CampaignPublic:
    check_not_null(body)
    async with state.engine.connect() as conn:
        row = await get_owned(CAMPAIGN, campaign_id, principal.tenants, conn)
        plan = await plan_update(conn, row, body)
    await apply_update(state.engine, control, row, plan, any_field=bool(body.model_fields_set))
    return await _public(state.engine, principal, campaign_id)


@router.delete("/{campaign_id}", status_code=204)
async def delete_campaign(
    campaign_id: str, principal: PrincipalDep, state: StateDep, control: ControlDep
) -> Response:
    row = await _owned(state.engine, principal, campaign_id)
    if row.status != CampaignStatus.DRAFT:
        raise Problem(
            409, f"only DRAFT campaigns can be deleted; this one is {row.status}", currentStatus=row.status
        )
    await control.update(campaign_id, "discard", TransitionResult, status=row.status)
    async with state.engine.begin() as conn:
        await delete_row(conn, campaign_id)
    return Response(status_code=204)


# ---- lifecycle ----------------------------------------------------------------------------------


@router.post("/{campaign_id}/schedule", response_model=ScheduleResponse, response_model_by_alias=True)
async def schedule_campaign(
    campaign_id: str, body: ScheduleBody, principal: PrincipalDep, state: StateDep, control: ControlDep
) -> ScheduleResponse:
    async with state.engine.connect() as conn:
        row = await get_owned(CAMPAIGN, campaign_id, principal.tenants, conn)
        await require_approval(conn, state.settings, row.as_mapping())
    at = future(body.scheduled_at, row.timezone)
    r = await control.update(
        campaign_id, "schedule", TransitionResult, ScheduleRequest(scheduled_at=at), status=row.status
    )
    return ScheduleResponse(
        id=r.id, status=r.status, scheduled_at=r.scheduled_at, target_count=r.target_count
    )


async def _transition(
    campaign_id: str, action: str, principal: Principal, state: AppState, control: CampaignControl
) -> TransitionResult:
    async with state.engine.connect() as conn:
        row = await get_owned(CAMPAIGN, campaign_id, principal.tenants, conn)
        if action == "execute":
            await require_approval(conn, state.settings, row.as_mapping())
    result: TransitionResult = await control.update(campaign_id, action, TransitionResult, status=row.status)
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
    campaign: OwnedCampaign,
    conn: ConnDep,
    window: PageWindow,
    outcome: Outcome | None = None,
    channel: Channel | None = None,
    customer_id: Annotated[str | None, Query(alias="customerId", max_length=40)] = None,
) -> RecipientsPublic:
    f = reads.DeliveryFilter(
        outcome=outcome.value if outcome is not None else None,
        channel=channel.value if channel is not None else None,
        customer_id=customer_id,
    )
    total = await reads.count_deliveries(conn, campaign.id, f)
    rows = await reads.page_deliveries(conn, campaign.id, f, window.skip, window.take)
    return paginate(RecipientsPublic, Slice(total, rows), window)
