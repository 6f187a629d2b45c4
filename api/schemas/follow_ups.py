"""Schemas of POST /campaigns/:id/follow-up (README "Honest engagement", docs/engagement.md)."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field, field_validator

from api.schemas.campaigns import (
    CampaignPublic,
    ConversionEvent,
    Description,
    Id,
    Name,
    Timezone,
    WavePublic,
    check_channels,
    check_timezone,
)
from api.schemas.common import ApiIn, ApiOut, SaneDatetime
from core.enums import Channel, SkipReason
from core.policy import CampaignPolicy


class FollowUpAudience(StrEnum):
    """Which recipients of the source campaign the follow-up goes to. Opens and clicks are a
    person's only (a machine's open, such as a privacy proxy's prefetch, does not count as opened)."""

    NOT_OPENED = "NOT_OPENED"  # sent an email, and no human open or click
    NOT_CLICKED = "NOT_CLICKED"  # sent a message, and no human click
    OPENED_NOT_CLICKED = "OPENED_NOT_CLICKED"  # sent an email, a human open, no human click
    UNKNOWN = "UNKNOWN"  # a message whose outcome a crash left UNKNOWN, and none SENT
    SKIPPED = "SKIPPED"  # skipped (for `reason`, when given), and no message SENT


class FollowUpCreate(ApiIn):
    """A new DRAFT ONE_TIME campaign; a field left out is taken from the source campaign (channels,
    templates, timezone, club, conversion event)."""

    audience: FollowUpAudience
    # Only with SKIPPED: the skip reason to follow up (e.g. QUIET_HOURS, FREQUENCY_CAP).
    reason: SkipReason | None = None
    name: Name
    description: Description | None = None
    channels: list[Channel] | None = None
    email_template_id: Id | None = None
    sms_template_id: Id | None = None
    timezone: Timezone | None = None
    conversion_event: ConversionEvent | None = None
    conversion_window_hours: Annotated[int, Field(ge=1, le=24 * 90)] | None = None
    policy: CampaignPolicy | None = None
    scheduled_at: SaneDatetime | None = None

    _tz = field_validator("timezone")(check_timezone)
    _ch = field_validator("channels")(check_channels)


class FollowUpInfo(ApiOut):
    """How the follow-up's audience was built: stored with the campaign."""

    audience: FollowUpAudience
    reason: SkipReason | None = None
    segment_id: str
    # Recipients of the source with that outcome, and those of them left out because their
    # consent or suppression would skip them on every channel of the follow-up.
    matched: int
    excluded: int
    recipients: int
    built_at: datetime


class FollowUpCampaignPublic(CampaignPublic):
    """The new campaign, with its source and how its audience was built."""

    source_campaign_id: str
    follow_up: FollowUpInfo


# CampaignPublic names WavePublic by a forward reference, resolved in this module's namespace.
FollowUpCampaignPublic.model_rebuild(_types_namespace={"WavePublic": WavePublic})


class FollowUpLinkPublic(ApiOut):
    """GET /campaigns/:id/follow-up: a follow-up campaign's source and audience record."""

    campaign_id: str
    source_campaign_id: str
    follow_up: FollowUpInfo
