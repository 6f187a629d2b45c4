"""GET /campaigns/:id/stats and /campaigns/:id/interactions: read from the roll-ups (README "Stats").

Both show human and machine engagement apart (README "Honest engagement"): /stats adds the human and
machine counts and the human rates, and the tenant's policy (`engagement.rates`) says whether the
seed's rates use all counts (the default) or human ones; each interaction carries its class.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.deps import PrincipalDep, ReadConnDep, SettingsDep, json_response
from api.experiments import experiment_stats, holdout_view
from api.routes.campaigns import load_campaign
from api.schemas.common import PageMeta
from api.schemas.stats import (
    CampaignStatsPublic,
    ChannelStats,
    EmailChannelStats,
    InteractionPublic,
    InteractionsPublic,
    RunStats,
    SmsChannelStats,
    TimelineBucket,
    TriggerStats,
)
from core.enums import CampaignType, Channel, InteractionType
from core.policy import RateBasis, defaults
from db.campaign_counts import RecipientCounts, rate
from db.policies import tenant_policy
from db.stats import (
    HumanCounts,
    InteractionFilter,
    campaign_stats,
    count_interactions,
    customer_name,
    page_interactions,
    run_stats,
    trigger_stats,
)

router = APIRouter(prefix="/campaigns", tags=["stats"])

Skip = Annotated[int, Query(ge=0, le=10_000_000)]
Take = Annotated[int, Query(ge=1, le=1000)]


def _engagement_fields(t: RecipientCounts, human: HumanCounts, basis: RateBasis) -> dict[str, Any]:
    """The seed's rates (on all or human counts, as the tenant chose) and the human/machine split
    (README "Honest engagement"): machine = all - human, so the two always add up."""
    human_rates = {
        "open_rate": rate(human.opened, t.delivered),
        "click_rate": rate(human.clicked, human.opened),
        "conversion_rate": rate(t.converted, human.clicked),
    }
    seed_rates = (
        human_rates
        if basis == RateBasis.HUMAN
        else {
            "open_rate": rate(t.opened, t.delivered),
            "click_rate": rate(t.clicked, t.opened),
            "conversion_rate": rate(t.converted, t.clicked),
        }
    )
    return {
        **seed_rates,
        "human_opened_count": human.opened,
        "machine_opened_count": t.opened - human.opened,
        "human_clicked_count": human.clicked,
        "machine_clicked_count": t.clicked - human.clicked,
        "human_open_rate": human_rates["open_rate"],
        "human_click_rate": human_rates["click_rate"],
        "human_conversion_rate": human_rates["conversion_rate"],
        "rate_basis": basis,
    }


@router.get("/{campaign_id}/stats", response_model=CampaignStatsPublic, response_model_by_alias=True)
async def get_campaign_stats(
    campaign_id: str, principal: PrincipalDep, conn: ReadConnDep, settings: SettingsDep
) -> Response:
    row = await load_campaign(conn, principal, campaign_id)
    stats = await campaign_stats(conn, campaign_id)
    policy = await tenant_policy(conn, row["tenant_id"], defaults(settings.sms_quiet_hours_default))
    t = stats.totals
    email = stats.by_channel.get(Channel.EMAIL, RecipientCounts())
    sms = stats.by_channel.get(Channel.SMS, RecipientCounts())
    stats_public = CampaignStatsPublic(
        campaign_id=campaign_id,
        target_count=row["target_count"],
        sent_count=t.sent,
        delivered_count=t.delivered,
        opened_count=t.opened,
        clicked_count=t.clicked,
        converted_count=t.converted,
        unsubscribed_count=t.unsubscribed,
        bounced_count=t.bounced,
        delivery_rate=rate(t.delivered, t.sent),
        **_engagement_fields(t, stats.human, policy.engagement.rates),
        by_channel=ChannelStats(
            email=EmailChannelStats(
                sent=email.sent,
                delivered=email.delivered,
                opened=email.opened,
                clicked=email.clicked,
                bounced=email.bounced,
            ),
            sms=SmsChannelStats(sent=sms.sent, delivered=sms.delivered, failed=sms.failed),
        ),
        timeline=[
            TimelineBucket(hour=b.hour, sent=b.sent, opened=b.opened, human_opened=b.human_opened)
            for b in stats.timeline
        ],
        # The same sources as GET /campaigns/:id, so both always agree.
        skipped_count=row["skipped_count"],
        failed_count=t.failed,
        unknown_count=row["unknown_count"],
        runs=(
            [RunStats(**r) for r in await run_stats(conn, campaign_id)]
            if row["type"] == CampaignType.RECURRING
            else None
        ),
        triggers=(
            TriggerStats(**await trigger_stats(conn, campaign_id))
            if row["type"] == CampaignType.TRIGGERED
            else None
        ),
        as_of=stats.as_of,
        rollup_pending=stats.rollup_pending,
        holdout=await holdout_view(conn, campaign_id) if row.get("holdout_percent") else None,
        **await experiment_stats(conn, campaign_id, row),
    )
    return json_response(stats_public)  # serialised once (api.deps.json_response)


@router.get("/{campaign_id}/interactions", response_model=InteractionsPublic, response_model_by_alias=True)
async def list_interactions(
    campaign_id: str,
    principal: PrincipalDep,
    conn: ReadConnDep,
    type: InteractionType | None = None,
    channel: Channel | None = None,
    customer_id: Annotated[str | None, Query(alias="customerId", min_length=1, max_length=40)] = None,
    skip: Skip = 0,
    take: Take = 25,
) -> Response:
    await load_campaign(conn, principal, campaign_id)
    f = InteractionFilter(
        type=type.value if type else None,
        channel=channel.value if channel else None,
        customer_id=customer_id,
    )
    total = await count_interactions(conn, campaign_id, f)
    rows = await page_interactions(conn, campaign_id, f, skip, take) if skip < total else []
    data = [
        InteractionPublic(
            id=r["id"],
            customer_id=r["customer_id"],
            customer_email=r["customer_email"],
            customer_name=customer_name(r["first_name"], r["last_name"]),
            type=r["type"],
            channel=r["channel"],
            occurred_at=r["occurred_at"],
            metadata=r["metadata"] or {},
            class_=r["engagement_class"],
            class_reason=r["class_reason"],
        )
        for r in rows
    ]
    return json_response(InteractionsPublic(data=data, meta=PageMeta(total=total, skip=skip, take=take)))
