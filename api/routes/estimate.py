"""`GET /campaigns/:id/estimate`: what sending the campaign now (or at its scheduled time) would do,
without sending (api.estimates; README "Sending policies")."""

from datetime import UTC, datetime

from fastapi import APIRouter

from api.deps import ConnDep, PrincipalDep, SettingsDep, StateDep
from api.errors import Problem
from api.estimates import estimate
from api.routes.campaigns import load_campaign
from api.schemas.estimates import CampaignEstimate
from core.policy import defaults
from core.settings import Settings
from db import policies
from db.campaign_content import send_content
from db.segments import load_segment
from providers.render_pool import RenderPool

router = APIRouter(prefix="/campaigns", tags=["campaigns"])


def _per_second(settings: Settings, channel: str) -> float | None:
    """The channel's provider account limit (accounts are named by channel, lower case)."""
    limit = settings.rate_limits.get(channel.lower())
    return None if limit is None else limit.per_second


@router.get("/{campaign_id}/estimate", response_model=CampaignEstimate, response_model_by_alias=True)
async def campaign_estimate(
    campaign_id: str, principal: PrincipalDep, conn: ConnDep, settings: SettingsDep, state: StateDep
) -> CampaignEstimate:
    """Audience per channel after consent, suppression, quiet hours and frequency caps; SMS
    segments; the expected duration at the rate limits. Nothing is sent or written."""
    row = await load_campaign(conn, principal, campaign_id)
    tenant_id = row["tenant_id"]
    if not row["segment_id"]:
        raise Problem(409, "only a campaign with a segment can be estimated", currentStatus=row["status"])
    segment = await load_segment(conn, tenant_id, row["segment_id"])
    content = await send_content(conn, campaign_id=campaign_id, tenant_id=tenant_id, run_id="")
    if segment is None or content is None or content.missing is not None:
        raise Problem(
            409, "the campaign's segment or a template no longer exists", currentStatus=row["status"]
        )
    policy = await policies.effective_policy(
        conn, campaign_id, tenant_id, defaults(settings.sms_quiet_hours_default)
    )
    now = datetime.now(UTC)
    scheduled = row["scheduled_at"]
    pool = state.render_pool
    if pool is None:  # AppState always sets one
        pool = RenderPool.shared(settings)
    return await estimate(
        conn,
        pool,
        campaign_id=campaign_id,
        tenant_id=tenant_id,
        segment=segment,
        content=content,
        policy=policy,
        at=scheduled if scheduled is not None and scheduled > now else now,
        rates={channel: _per_second(settings, channel) for channel in content.channels},
    )
