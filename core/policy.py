"""Sending policies: quiet hours, frequency caps and auto-pause (README "Sending policies").

One model per tenant (`TenantPolicy`, stored whole in `tenant_policies`, defaults here) and a small
set of per-campaign overrides (`CampaignPolicy`, stored with the campaign). `effective` folds the
two into what a send applies. Pure code: the API validates with these models, the send gates and
the workflow read them, and nothing here does I/O, so the workflow sandbox can import it too.
"""

import hashlib
from datetime import UTC, datetime, time, timedelta
from datetime import date as Date
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from core.addresses import AddressLists
from core.enums import Channel
from core.experiments import ABTest

LocalTime = Annotated[
    str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", max_length=5, description="HH:MM, 24-hour")
]
Address = Annotated[str, Field(min_length=3, max_length=320)]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class QuietMode(StrEnum):
    """What happens to a message that would go out inside quiet hours."""

    WAIT = "WAIT"  # it waits for the window's end (a durable timer in the workflow)
    SKIP = "SKIP"  # it is recorded SKIPPED with reason QUIET_HOURS


class CapMode(StrEnum):
    """What happens to a message to a person at the frequency cap."""

    SKIP = "SKIP"  # recorded SKIPPED with reason FREQUENCY_CAP
    DEFER = "DEFER"  # it waits until the cap frees a place, if that is within the campaign's limit


class QuietWindow(_Model):
    """Local times between which nothing is sent; `start` after `end` crosses midnight."""

    start: LocalTime
    end: LocalTime

    @model_validator(mode="after")
    def _not_empty(self) -> "QuietWindow":
        if self.start == self.end:
            raise ValueError("start and end must differ (an empty window is `null`)")
        return self

    def _times(self) -> tuple[time, time]:
        return time.fromisoformat(self.start), time.fromisoformat(self.end)

    def ends_at(self, at: datetime, zone: ZoneInfo) -> datetime | None:
        """When the window holding instant `at` ends (UTC), or None when `at` is outside it.

        Evaluated on the wall clock of `zone`, so a DST change moves the window with the clock:
        21:00-08:00 stays 21:00-08:00 local on the night the clocks change. An end time that does
        not exist that day (inside a spring-forward gap) is read with the offset before the gap."""
        start, end = self._times()
        local = at.astimezone(zone)
        now = local.time().replace(tzinfo=None)
        if start < end:
            inside = start <= now < end
            end_day = local.date()
        else:  # crosses midnight: from start to 24:00, and from 00:00 to end
            inside = now >= start or now < end
            end_day = local.date() + timedelta(days=1) if now >= start else local.date()
        if not inside:
            return None
        return datetime.combine(end_day, end, tzinfo=zone).astimezone(UTC)


class DeliverAt(_Model):
    """Recipient-local delivery: each message goes at `local_time` in its recipient's zone, on
    `date` when given, else at the first such time from the start of the send (or of the run)."""

    local_time: LocalTime
    date: Date | None = None

    def instant(self, anchor: datetime, zone: ZoneInfo) -> datetime:
        """The UTC instant of this recipient's delivery for a send that started at `anchor`."""
        at = time.fromisoformat(self.local_time)
        if self.date is not None:
            return datetime.combine(self.date, at, tzinfo=zone).astimezone(UTC)
        local = anchor.astimezone(zone)
        candidate = datetime.combine(local.date(), at, tzinfo=zone).astimezone(UTC)
        if candidate < anchor:
            candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone).astimezone(UTC)
        return candidate


class FrequencyCap(_Model):
    """At most `max_messages` per person on a channel in any rolling window of `hours` (or `days`),
    across every campaign of the tenant."""

    max_messages: int = Field(ge=1, le=1000)
    hours: int | None = Field(None, ge=1, le=24 * 90)
    days: int | None = Field(None, ge=1, le=90)

    @model_validator(mode="after")
    def _one_window(self) -> "FrequencyCap":
        if (self.hours is None) == (self.days is None):
            raise ValueError("give exactly one of `hours` or `days`")
        return self

    @property
    def window(self) -> timedelta:
        return timedelta(hours=self.hours) if self.hours is not None else timedelta(days=self.days or 0)


class ChannelRules(_Model):
    """The tenant's rules for one channel."""

    quiet_hours: QuietWindow | None = None
    frequency_cap: FrequencyCap | None = None


class AutoPause(_Model):
    """Pause a campaign whose failure rate (bounced + failed, over its last `window` messages)
    passes `failure_rate`, once at least `min_messages` were sent; `enabled=false` turns it off."""

    enabled: bool = True
    failure_rate: float = Field(0.25, gt=0, le=1)
    window: int = Field(500, ge=10, le=100_000)
    min_messages: int = Field(100, ge=1, le=100_000)


class Seeds(_Model, AddressLists):
    """Addresses that get a copy of each campaign's first message per channel (inbox monitoring);
    the copies are marked and counted in no stats."""

    emails: list[Address] = Field(default_factory=list, max_length=20)
    phones: list[Address] = Field(default_factory=list, max_length=20)

    def of(self, channel: str) -> list[str]:
        return self.emails if channel == Channel.EMAIL else self.phones


class RateBasis(StrEnum):
    """Which counts the seed's rates (`openRate`, `clickRate`, `conversionRate`) divide."""

    ALL = "ALL"  # every open and click, as the seed defines them (the default)
    HUMAN = "HUMAN"  # only those not classified as a machine's (README "Honest engagement")


class Engagement(_Model):
    """How a tenant reads engagement: the basis of the seed's rates in /stats, and how long after
    a campaign starts a follow-up may be built from its ledger before it is COMPLETED (None: only
    once COMPLETED)."""

    rates: RateBasis = RateBasis.ALL
    follow_up_after_hours: int | None = Field(None, ge=1, le=24 * 90)


def _sms_default() -> ChannelRules:
    return ChannelRules(quiet_hours=QuietWindow(start="21:00", end="08:00"))


def defaults(sms_quiet_hours: str) -> "TenantPolicy":
    """The policy of a tenant that set none, with the deployment's SMS quiet hours
    ("HH:MM-HH:MM", or empty for none: `CAMPAIGNS_SMS_QUIET_HOURS_DEFAULT`)."""
    if not sms_quiet_hours:
        return TenantPolicy(sms=ChannelRules())
    start, _, end = sms_quiet_hours.partition("-")
    return TenantPolicy(sms=ChannelRules(quiet_hours=QuietWindow(start=start, end=end)))


def completed(policy: "TenantPolicy", sms_quiet_hours: str) -> "TenantPolicy":
    """`policy` as a tenant sent it, with the SMS rules it left out (not in its fields set) taken
    from the deployment's default, as `defaults` does for a tenant with no policy: a policy that
    names only its seeds must not bring quiet hours the deployment turned off."""
    if "sms" in policy.model_fields_set:
        return policy
    return policy.model_copy(update={"sms": defaults(sms_quiet_hours).sms})


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown IANA timezone {value!r}") from err
    return value


class TenantPolicy(_Model):
    """A tenant's sending policy. Defaults: SMS quiet hours 21:00-08:00, email none; no frequency
    cap; waiting out quiet hours; auto-pause at 25% failures over the last 500 messages."""

    email: ChannelRules = Field(default_factory=ChannelRules)
    sms: ChannelRules = Field(default_factory=_sms_default)
    quiet_mode: QuietMode = QuietMode.WAIT
    auto_pause: AutoPause = Field(default_factory=AutoPause)
    # A campaign needs an approve from a user other than its creator before schedule or execute.
    require_approval: bool = False
    seeds: Seeds = Field(default_factory=Seeds)
    # The tenant's weight in the split of a rate-limited provider account it shares.
    rate_weight: float = Field(1.0, gt=0, le=100)
    # Human and machine engagement (README "Honest engagement").
    engagement: Engagement = Field(default_factory=Engagement)

    def rules(self, channel: str) -> ChannelRules:
        return self.email if channel == Channel.EMAIL else self.sms


class CampaignPolicy(_Model):
    """Per-campaign overrides; a field left out keeps the tenant's rule.

    `quiet_hours` replaces the tenant's windows for the channels it names (`null` for a channel:
    no quiet hours on it for this campaign). `ignore_frequency_cap` is for service messages."""

    quiet_hours: dict[Channel, QuietWindow | None] | None = Field(None, max_length=2)
    quiet_mode: QuietMode | None = None
    ignore_frequency_cap: bool = False
    # DEFER: a capped message waits for the cap to free a place, at most `defer_limit_hours`;
    # beyond that it is skipped as with SKIP.
    frequency_cap_mode: CapMode = CapMode.SKIP
    defer_limit_hours: int = Field(24, ge=1, le=24 * 14)


def in_holdout(campaign_id: str, customer_id: str, percent: float) -> bool:
    """Whether a person is in the campaign's holdout group: a stable draw from the campaign and
    customer ids (the same person is held out on every channel, page retry and run)."""
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"{campaign_id}\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < percent / 100 * 2**64


class Effective(_Model):
    """What one campaign's send applies, per channel, after the overrides."""

    quiet_hours: dict[str, QuietWindow | None]
    quiet_mode: QuietMode
    frequency_caps: dict[str, FrequencyCap | None]
    frequency_cap_mode: CapMode = CapMode.SKIP
    defer_limit: timedelta = timedelta(hours=24)
    auto_pause: AutoPause
    deliver_at: DeliverAt | None = None
    # Percent of the audience held out as a control group (README "Holdout groups").
    holdout_percent: float = 0.0
    seeds: Seeds = Field(default_factory=Seeds)
    rate_weight: float = 1.0
    # An A/B test and its winner once decided (core.experiments).
    ab_test: ABTest | None = None
    ab_winner: str | None = None
    # The campaign's timezone: quiet hours of a recipient without one are read there.
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return _zone(value)

    def zone_for(self, recipient_zone: str | None) -> ZoneInfo:
        """The recipient's zone when it is a known IANA name, else the campaign's."""
        if recipient_zone:
            try:
                return ZoneInfo(recipient_zone)
            except (ZoneInfoNotFoundError, ValueError):
                pass
        return ZoneInfo(self.timezone)


def effective(
    tenant: TenantPolicy,
    campaign: CampaignPolicy,
    timezone: str = "UTC",
    deliver_at: DeliverAt | None = None,
    holdout_percent: float = 0.0,
) -> Effective:
    channels = [c.value for c in Channel]
    quiet = {c: tenant.rules(c).quiet_hours for c in channels}
    if campaign.quiet_hours is not None:
        for channel, window in campaign.quiet_hours.items():
            quiet[channel.value] = window
    caps = {c: None if campaign.ignore_frequency_cap else tenant.rules(c).frequency_cap for c in channels}
    return Effective(
        quiet_hours=quiet,
        quiet_mode=campaign.quiet_mode or tenant.quiet_mode,
        frequency_caps=caps,
        frequency_cap_mode=campaign.frequency_cap_mode,
        defer_limit=timedelta(hours=campaign.defer_limit_hours),
        auto_pause=tenant.auto_pause,
        deliver_at=deliver_at,
        holdout_percent=holdout_percent,
        seeds=tenant.seeds,
        rate_weight=tenant.rate_weight,
        timezone=timezone,
    )
