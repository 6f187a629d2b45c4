"""POST /campaigns/:id/follow-up: a DRAFT campaign to the recipients with an outcome (api.follow_ups),
and GET /campaigns/:id/follow-up: a follow-up's source and how its audience was built."""

from fastapi import APIRouter

from api.deps import ControlDep, PrincipalDep, SettingsDep, StateDep
from api.errors import Problem
from api.follow_ups import create_follow_up
from api.routes.campaigns import load_campaign
from api.schemas.follow_ups import FollowUpCampaignPublic, FollowUpCreate, FollowUpLinkPublic
from core.policy import defaults
from db.follow_ups import follow_up_link
from db.policies import tenant_policy

router = APIRouter(prefix="/campaigns", tags=["campaigns"])


@router.post(
    "/{campaign_id}/follow-up",
    status_code=201,
    response_model=FollowUpCampaignPublic,
    response_model_by_alias=True,
)
async def follow_up(
    campaign_id: str,
    body: FollowUpCreate,
    principal: PrincipalDep,
    state: StateDep,
    control: ControlDep,
    settings: SettingsDep,
) -> FollowUpCampaignPublic:
    """Create a DRAFT ONE_TIME campaign whose STATIC audience is this campaign's recipients with the
    outcome `audience` (opens and clicks of people only), minus those their current consent or
    suppression would skip. 409 until the campaign is COMPLETED (README "Honest engagement")."""
    async with state.engine.connect() as conn:
        source = await load_campaign(conn, principal, campaign_id)
        policy = await tenant_policy(conn, source["tenant_id"], defaults(settings.sms_quiet_hours_default))
    return await create_follow_up(state, control, principal, source, body, policy)


@router.get("/{campaign_id}/follow-up", response_model=FollowUpLinkPublic, response_model_by_alias=True)
async def follow_up_source(campaign_id: str, principal: PrincipalDep, state: StateDep) -> FollowUpLinkPublic:
    """The campaign's source and how its audience was built; 404 when it is no follow-up."""
    async with state.engine.connect() as conn:
        source = await load_campaign(conn, principal, campaign_id)
        link = await follow_up_link(conn, campaign_id, source["tenant_id"])
    if link is None or link.source_campaign_id is None or link.follow_up is None:
        raise Problem(404, "follow-up not found")
    return FollowUpLinkPublic.model_validate(
        {
            "campaign_id": campaign_id,
            "source_campaign_id": link.source_campaign_id,
            "follow_up": link.follow_up,
        }
    )
