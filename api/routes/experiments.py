"""An A/B test's numbers and the operator's early pick (api.experiments; README "A/B tests")."""

from typing import Any

from fastapi import APIRouter

from api.deps import ConnDep, PrincipalDep, StateDep
from api.errors import Problem, invalid
from api.experiments import experiment_view
from api.routes.campaigns import load_campaign
from api.schemas.common import ApiIn
from core.experiments import ABTest, VariantKey
from core.messages import TransitionResult, WinnerRequest

router = APIRouter(prefix="/campaigns", tags=["campaigns"])


class WinnerBody(ApiIn):
    variant: VariantKey


@router.get("/{campaign_id}/experiment")
async def get_experiment(campaign_id: str, principal: PrincipalDep, conn: ConnDep) -> dict[str, Any]:
    """The A/B test, each variant's counts and rates, and the decision with its numbers
    (`abTest: null` for a campaign without one)."""
    row = await load_campaign(conn, principal, campaign_id)
    view = await experiment_view(conn, campaign_id, row["tenant_id"])
    if view is None:
        raise Problem(404, f"campaign {campaign_id} not found")
    return view


@router.post("/{campaign_id}/winner")
async def pick_winner(
    campaign_id: str, body: WinnerBody, principal: PrincipalDep, state: StateDep
) -> dict[str, Any]:
    """End the test phase now with this variant (409 when no test waits for its winner)."""
    async with state.engine.connect() as conn:
        row = await load_campaign(conn, principal, campaign_id)
    if row["ab_test"] is None:
        raise Problem(409, "the campaign has no A/B test", currentStatus=row["status"])
    if body.variant not in [v.key for v in ABTest.model_validate(row["ab_test"]).variants]:
        raise invalid("$.variant", f"the test has no variant {body.variant}")
    if state.control is None:
        raise Problem(503, "the workflow service is unavailable, try again")
    result = await state.control.update(
        campaign_id,
        "pick_winner",
        TransitionResult,
        WinnerRequest(variant=body.variant),
        status=row["status"],
    )
    return {"id": campaign_id, "status": result.status.value, "winner": body.variant}
