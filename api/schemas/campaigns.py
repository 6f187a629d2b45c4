"""Campaign schemas, field for field as the seed spells them."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from api.schemas.common import ApiIn, ApiOut, FiniteFloat, Page, SafeStr, SaneDatetime, UtcDatetime
from core.enums import CampaignStatus, CampaignType, Channel
from core.experiments import ABTest
from core.policy import CampaignPolicy, DeliverAt
from core.recurrence import RecurringSchedule

# Every free-text field is a SafeStr: a NUL character is a 422, never a database error.
Name = Annotated[SafeStr, Field(min_length=1, max_length=200)]
Id = Annotated[SafeStr, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_\-]+$")]
TenantId = Annotated[SafeStr, Field(min_length=1, max_length=100)]
ClubId = Annotated[SafeStr, Field(max_length=100)]
Description = Annotated[SafeStr, Field(max_length=5000)]
Timezone = Annotated[SafeStr, Field(max_length=64)]  # the column is varchar(64)
ConversionEvent = Annotated[SafeStr, Field(min_length=1, max_length=200)]


def check_timezone(value: str | None) -> str | None:
    """An IANA zone name (None passes: an optional field left out or null)."""
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown IANA timezone {value!r}") from err
    return value


def check_channels(value: list[Channel] | None) -> list[Channel] | None:
    if value is None:
        return None
    if not value:
        raise ValueError("at least one channel is required")
    if len(set(value)) != len(value):
        raise ValueError("channels must not repeat")
    return value


TriggerEvent = Annotated[SafeStr, Field(min_length=1, max_length=200)]
# Conditions are compared with event data in jsonb, which has no NaN or Infinity.
ConditionValue = Annotated[SafeStr, Field(max_length=500)] | int | FiniteFloat | bool | None
ConditionKey = Annotated[SafeStr, Field(min_length=1, max_length=100)]
TriggerConditions = Annotated[dict[ConditionKey, ConditionValue], Field(max_length=20)]
DayOfWeek = Annotated[int, Field(ge=1, le=7, description="1 = Monday … 7 = Sunday")]
DayOfMonth = Annotated[int, Field(ge=1, le=31, description="29 to 31 run on the last day of shorter months")]


class ScheduleIn(ApiIn):
    """A RECURRING schedule (README "Campaign types"). `timezone` defaults to the campaign's; `startAt` and
    `endAt` without an offset are read in that timezone."""

    frequency: Literal["daily", "weekly", "monthly"]
    day_of_week: DayOfWeek | None = None
    day_of_month: DayOfMonth | None = None
    time: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="local HH:MM")]
    timezone: Timezone | None = None
    start_at: SaneDatetime | None = None
    end_at: SaneDatetime | None = None
    max_runs: Annotated[int, Field(ge=1, le=100_000)] | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)

    @model_validator(mode="after")
    def _days_fit_frequency(self) -> "ScheduleIn":
        if self.frequency == "weekly" and self.day_of_week is None:
            raise ValueError("dayOfWeek is required for a weekly schedule")
        if self.frequency == "monthly" and self.day_of_month is None:
            raise ValueError("dayOfMonth is required for a monthly schedule")
        if self.frequency != "weekly" and self.day_of_week is not None:
            raise ValueError("dayOfWeek applies to weekly schedules only")
        if self.frequency != "monthly" and self.day_of_month is not None:
            raise ValueError("dayOfMonth applies to monthly schedules only")
        return self

    def stored(self, campaign_timezone: str) -> dict[str, Any]:
        """The schedule as the workflow will run it: zone resolved, instants in UTC."""
        zone = self.timezone or campaign_timezone

        def utc(value: datetime | None) -> datetime | None:
            if value is None:
                return None
            if value.tzinfo is None:
                value = value.replace(tzinfo=ZoneInfo(zone))
            return value.astimezone(UTC)

        start, end = utc(self.start_at), utc(self.end_at)
        if start is not None and end is not None and end <= start:
            raise ValueError("endAt must be after startAt")
        schedule = RecurringSchedule(
            frequency=self.frequency,
            time=self.time,
            timezone=zone,
            day_of_week=self.day_of_week,
            day_of_month=self.day_of_month,
            start_at=start,
            end_at=end,
            max_runs=self.max_runs,
        )
        return schedule.model_dump(by_alias=True, mode="json")


class _CampaignFields(ApiIn):
    """The fields a create and a PATCH take alike (all optional on both); a new campaign field
    that both take goes here."""

    description: Description | None = None
    segment_id: Id | None = None
    email_template_id: Id | None = None
    sms_template_id: Id | None = None
    conversion_event: ConversionEvent | None = None
    conversion_window_hours: Annotated[int, Field(ge=1, le=24 * 90)] | None = None
    schedule: ScheduleIn | None = None
    trigger_event: TriggerEvent | None = None
    trigger_conditions: TriggerConditions | None = None
    # Overrides of the tenant's sending policy (README "Sending policies"); on a PATCH it
    # replaces the campaign's overrides whole (null: none) and the next page applies it.
    policy: CampaignPolicy | None = None
    # ONE_TIME and RECURRING: deliver at this local time in each recipient's zone, in waves. A
    # PATCH may change it before sending starts only (DRAFT or SCHEDULED); null: not used.
    deliver_at: DeliverAt | None = None
    # Percent of the audience held out as a control group (skipped HOLDOUT; README "Holdout
    # groups"). A PATCH may change it in DRAFT only (the groups are drawn when sending starts).
    holdout_percent: Annotated[float, Field(ge=0, le=50)] | None = None
    # ONE_TIME: an A/B test of up to 4 variants (README "A/B tests"). A PATCH may change it in
    # DRAFT only; null removes the test.
    ab_test: ABTest | None = None
    # The sender identity it sends as (docs/tenants-and-providers.md); null: the tenant's default
    # identity, else the platform's From and sender. It must be the tenant's, and verified for EMAIL.
    sender_identity_id: Id | None = None


class CampaignCreate(_CampaignFields):
    tenant_id: TenantId
    club_id: ClubId | None = None
    name: Name
    type: CampaignType = CampaignType.ONE_TIME
    channels: list[Channel]
    timezone: Timezone = "UTC"
    # Create and schedule in one call (the seed's type examples carry it); without an offset it
    # is read in `timezone`.
    scheduled_at: SaneDatetime | None = None

    _tz = field_validator("timezone")(check_timezone)
    _ch = field_validator("channels")(check_channels)


class CampaignUpdate(_CampaignFields):
    name: Name | None = None
    channels: list[Channel] | None = None
    timezone: Timezone | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)

    _ch = field_validator("channels")(check_channels)


class ScheduleBody(ApiIn):
    scheduled_at: SaneDatetime


class CampaignSummary(ApiOut):
    id: str
    name: str
    type: CampaignType
    status: CampaignStatus
    channels: list[Channel]
    segment_id: str | None
    scheduled_at: UtcDatetime | None
    target_count: int | None
    sent_count: int
    open_rate: float | None
    created_at: UtcDatetime


class CampaignsPublic(Page[CampaignSummary]):
    """Newest first."""


class CampaignPublic(ApiOut):
    id: str
    tenant_id: str
    club_id: str | None
    name: str
    description: str | None
    type: CampaignType
    status: CampaignStatus
    channels: list[Channel]
    segment_id: str | None
    segment_name: str | None
    email_template_id: str | None
    sms_template_id: str | None
    scheduled_at: UtcDatetime | None
    timezone: str
    target_count: int | None
    sent_count: int
    delivered_count: int
    opened_count: int
    clicked_count: int
    converted_count: int
    unsubscribed_count: int
    bounced_count: int
    failed_count: int
    skipped_count: int
    unknown_count: int
    open_rate: float | None
    conversion_event: str | None
    conversion_window_hours: int | None
    schedule: dict[str, Any] | None = None
    next_run_at: UtcDatetime | None = None
    last_run_at: UtcDatetime | None = None
    run_count: int = 0
    trigger_event: str | None = None
    trigger_conditions: dict[str, Any] | None = None
    # Why the campaign paused itself (e.g. its template was deleted); null otherwise.
    last_error: str | None = None
    # Its overrides of the tenant's sending policy (README "Sending policies"); null: none.
    policy: dict[str, Any] | None = None
    deliver_at: dict[str, Any] | None = None
    # Messages waiting for an instant (a local-time wave or a quiet window's end), when the
    # campaign delivers at local time; null otherwise.
    waves: list["WavePublic"] | None = None
    holdout_percent: float = 0.0
    ab_test: dict[str, Any] | None = None
    ab_winner: str | None = None
    sender_identity_id: str | None = None
    # A follow-up's source campaign (POST /campaigns/:id/follow-up); null for any other campaign.
    source_campaign_id: str | None = None
    # When the run will be sent at its rate limits' current pace; null when nothing is limited.
    expected_finish_at: UtcDatetime | None = None
    # Who approved the campaign and when (README "Approvals"); null: not approved.
    approved_by: str | None = None
    approved_at: UtcDatetime | None = None
    started_at: UtcDatetime | None
    paused_at: UtcDatetime | None
    resumed_at: UtcDatetime | None
    cancelled_at: UtcDatetime | None
    completed_at: UtcDatetime | None
    created_by: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ApproveResponse(ApiOut):
    id: str
    status: CampaignStatus
    approved_by: str | None
    approved_at: UtcDatetime | None


class WavePublic(ApiOut):
    at: UtcDatetime
    held: int


class ScheduleResponse(ApiOut):
    id: str
    status: CampaignStatus
    scheduled_at: UtcDatetime | None
    target_count: int | None


class ExecuteResponse(ApiOut):
    id: str
    status: CampaignStatus
    started_at: UtcDatetime | None
    target_count: int | None


class PauseResponse(ApiOut):
    id: str
    status: CampaignStatus
    paused_at: UtcDatetime | None
    sent_count: int


class ResumeResponse(ApiOut):
    id: str
    status: CampaignStatus
    resumed_at: UtcDatetime | None


class CancelResponse(ApiOut):
    id: str
    status: CampaignStatus
    cancelled_at: UtcDatetime | None
    sent_count: int


class RecipientPublic(ApiOut):
    customer_id: str
    channel: Channel
    outcome: str
    reason: str | None
    detail: str | None
    address: str | None
    sent_at: UtcDatetime | None
    provider_message_id: str | None
    run_id: str
    updated_at: UtcDatetime


class RecipientsPublic(Page[RecipientPublic]):
    """The campaign's ledger rows, one per recipient and channel."""
