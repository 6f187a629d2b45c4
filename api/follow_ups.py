"""Follow-ups from the ledger: "send again to those who did not open" (README "Honest engagement").

`POST /campaigns/:id/follow-up` builds a STATIC segment of the source campaign's recipients with the
chosen outcome (db.follow_ups: opens and clicks of people only), leaves out everyone whose current
consent or suppression would skip them on every channel of the follow-up (core.consent, the rule
the send applies), and creates a DRAFT ONE_TIME campaign on it through the normal create path, so
it is validated exactly as `POST /campaigns` validates (templates, channels, schedule, policy).
The new campaign then records its source and how its audience was built.

The source must be COMPLETED, so its outcomes are final; a tenant may allow follow-ups earlier,
`engagement.followUpAfterHours` after the source started (its policy), for campaigns that run for
long or never complete (RECURRING, TRIGGERED). Otherwise 409.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Response
from pydantic import ValidationError

from api.auth import Principal
from api.deps import AppState
from api.errors import Problem
from api.lifecycle import CampaignControl
from api.routes.campaigns import create_campaign
from api.schemas.campaigns import CampaignCreate
from api.schemas.follow_ups import FollowUpAudience, FollowUpCampaignPublic, FollowUpCreate, FollowUpInfo
from core.consent import skip_reason
from core.enums import CampaignStatus, CampaignType, SegmentType
from core.policy import TenantPolicy
from db import follow_ups
from db.audience import consent_of
from db.segments import add_members, insert_segment

_REASON_ERROR = {"path": "$.reason", "message": "only with the SKIPPED audience"}


def check_ready(source: dict[str, Any], policy: TenantPolicy, now: datetime) -> None:
    """409 unless the source's outcomes may be followed up now (module docstring)."""
    if source["status"] == CampaignStatus.COMPLETED:
        return
    wait = policy.engagement.follow_up_after_hours
    started = source.get("started_at")
    if wait is not None and started is not None and now >= started + timedelta(hours=wait):
        return
    when = "once it is COMPLETED"
    if wait is not None:
        when += f" or {wait} h after it started"
    raise Problem(409, f"the campaign is {source['status']}: a follow-up can be built {when}")


def create_body(source: dict[str, Any], body: FollowUpCreate, segment_id: str) -> CampaignCreate:
    """The `POST /campaigns` body of the follow-up: the request's fields, else the source's."""
    fields = body.model_dump(exclude_unset=True, exclude={"audience", "reason"})
    inherited = {
        "tenant_id": source["tenant_id"],
        "club_id": source["club_id"],
        "type": CampaignType.ONE_TIME,
        "segment_id": segment_id,
        "channels": source["channels"],
        "email_template_id": source["email_template_id"],
        "sms_template_id": source["sms_template_id"],
        "timezone": source["timezone"],
        "conversion_event": source["conversion_event"],
        "conversion_window_hours": source["conversion_window_hours"],
    }
    try:
        return CampaignCreate.model_validate({**inherited, **fields})
    except ValidationError as err:
        errors = [{"path": "$." + ".".join(map(str, e["loc"])), "message": e["msg"]} for e in err.errors()]
        raise Problem(422, "the follow-up is not a valid campaign", errors=errors) from None


def _channels(source: dict[str, Any], body: FollowUpCreate) -> list[str]:
    return [c.value for c in body.channels] if body.channels else list(source["channels"])


async def _audience(state: AppState, source: dict[str, Any], body: FollowUpCreate) -> tuple[str, int, int]:
    """Write the follow-up's STATIC segment: (its id, recipients matched, of them excluded)."""
    reason = body.reason.value if body.reason else None
    channels = _channels(source, body)
    async with state.engine.begin() as conn:
        matched = await follow_ups.recipients_with_outcome(conn, source["id"], body.audience.value, reason)
        consent = await consent_of(conn, source["tenant_id"], matched) if matched else []
        eligible = [c["id"] for c in consent if any(skip_reason(c, ch) is None for ch in channels)]
        if not eligible:
            raise Problem(
                422,
                f"no recipient of the campaign is {body.audience.value} and may be messaged",
                errors=[{"path": "$.audience", "message": f"{len(matched)} matched, none may be messaged"}],
            )
        segment_id = await insert_segment(
            conn,
            tenant_id=source["tenant_id"],
            club_id=source["club_id"],
            name=f"{body.name} ({body.audience.value} of {source['name']})"[:200],
            description=f"Follow-up audience of campaign {source['id']}: {body.audience.value}",
            type=SegmentType.STATIC,
            filter=None,
        )
        await add_members(conn, segment_id, sorted(eligible))
    return segment_id, len(matched), len(matched) - len(eligible)


async def create_follow_up(
    state: AppState,
    control: CampaignControl,
    principal: Principal,
    source: dict[str, Any],
    body: FollowUpCreate,
    policy: TenantPolicy,
) -> FollowUpCampaignPublic:
    """Build the audience, create the campaign through the create path, link it to its source."""
    if body.reason is not None and body.audience != FollowUpAudience.SKIPPED:
        raise Problem(422, "`reason` is for the SKIPPED audience", errors=[_REASON_ERROR])
    check_ready(source, policy, datetime.now(UTC))
    segment_id, matched, excluded = await _audience(state, source, body)
    try:
        create = create_body(source, body, segment_id)
        campaign = await create_campaign(create, principal, state, control, Response())
    except BaseException:
        async with state.engine.begin() as conn:
            await follow_ups.drop_segment(conn, source["tenant_id"], segment_id)
        raise
    info = FollowUpInfo(
        audience=body.audience,
        reason=body.reason,
        segment_id=segment_id,
        matched=matched,
        excluded=excluded,
        recipients=matched - excluded,
        built_at=datetime.now(UTC),
    )
    async with state.engine.begin() as conn:
        stored = info.model_dump(mode="json", by_alias=True)
        await follow_ups.link_to_source(conn, campaign.id, source["tenant_id"], source["id"], stored)
    return FollowUpCampaignPublic.model_validate(
        {**campaign.model_dump(), "source_campaign_id": source["id"], "follow_up": info}
    )
