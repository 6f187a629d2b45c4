"""Approvals (README "Approvals"): when the tenant's policy requires them, a campaign needs an
`approve` from a user other than its creator before it may be scheduled or executed (the rules
themselves: api.approvals)."""

from fastapi import APIRouter

from api.deps import PrincipalDep, StateDep
from api.errors import Problem
from api.routes.campaigns import load_campaign
from api.schemas.campaigns import ApproveResponse
from core.messages import ApprovalRequest, TransitionResult
from db import approvals

router = APIRouter(prefix="/campaigns", tags=["campaigns"])


@router.post("/{campaign_id}/approve", response_model=ApproveResponse, response_model_by_alias=True)
async def approve_campaign(campaign_id: str, principal: PrincipalDep, state: StateDep) -> ApproveResponse:
    """Approve a DRAFT or SCHEDULED campaign; its creator cannot (403)."""
    async with state.engine.connect() as conn:
        row = await load_campaign(conn, principal, campaign_id)
    if row["created_by"] is not None and row["created_by"] == principal.subject:
        raise Problem(403, "a campaign's creator cannot approve it: ask another user")
    if state.control is None:
        raise Problem(503, "the workflow service is unavailable, try again")
    result = await state.control.update(
        campaign_id, "approve", TransitionResult, ApprovalRequest(by=principal.subject), status=row["status"]
    )
    async with state.engine.begin() as conn:
        await approvals.set_approval(conn, campaign_id, result.approved_by, result.approved_at)
    return ApproveResponse(
        id=campaign_id, status=result.status, approved_by=result.approved_by, approved_at=result.approved_at
    )
