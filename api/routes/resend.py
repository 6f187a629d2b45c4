"""POST /campaigns/:id/resend-unknown: the operator's explicit resend of UNKNOWN deliveries."""

from fastapi import APIRouter, Response

from api.deps import ControlDep, PrincipalDep, StateDep
from api.errors import Problem
from api.routes.campaigns import FINAL, load_campaign
from api.schemas.common import ApiOut
from db.ledger.reads import count_unknown

router = APIRouter(prefix="/campaigns", tags=["campaigns"])


class ResendAccepted(ApiOut):
    campaign_id: str
    unknown_count: int
    workflow_id: str | None


@router.post(
    "/{campaign_id}/resend-unknown",
    status_code=202,
    response_model=ResendAccepted,
    response_model_by_alias=True,
    responses={200: {"model": ResendAccepted, "description": "No UNKNOWN delivery: nothing to resend"}},
)
async def resend_unknown(
    campaign_id: str, principal: PrincipalDep, state: StateDep, control: ControlDep, response: Response
) -> ResendAccepted:
    """Resend the deliveries whose outcome a crash left UNKNOWN (README "Delivery guarantees (the ledger)").

    Only for a campaign that has stopped sending (COMPLETED or CANCELLED), so a resend never runs
    beside the campaign's own pages. Each delivery keeps its id (the SMS idempotency key); an
    email that did arrive the first time arrives twice: the operator's informed choice.
    """
    async with state.engine.connect() as conn:
        row = await load_campaign(conn, principal, campaign_id)
        if row["status"] not in FINAL:
            raise Problem(
                409,
                f"UNKNOWN deliveries can be resent once the campaign has stopped; it is {row['status']}",
                currentStatus=row["status"],
            )
        unknown = await count_unknown(conn, campaign_id)
    if unknown == 0:
        response.status_code = 200
        return ResendAccepted(campaign_id=campaign_id, unknown_count=0, workflow_id=None)
    workflow_id = await control.start_resend(campaign_id, row["tenant_id"])
    return ResendAccepted(campaign_id=campaign_id, unknown_count=unknown, workflow_id=workflow_id)
