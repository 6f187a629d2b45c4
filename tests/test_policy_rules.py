"""The sending-policy rules as pure functions: quiet windows across midnight and DST, in odd-offset
zones, and how a campaign's overrides fold into the tenant's policy (core.policy)."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from core.policy import CampaignPolicy, FrequencyCap, QuietMode, QuietWindow, TenantPolicy, effective

NIGHT = QuietWindow(start="21:00", end="08:00")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "ends"),
    [
        (utc(2026, 6, 1, 20, 59), None),  # before the window
        (utc(2026, 6, 1, 21, 0), utc(2026, 6, 2, 8, 0)),  # its first minute, ends tomorrow
        (utc(2026, 6, 1, 23, 30), utc(2026, 6, 2, 8, 0)),
        (utc(2026, 6, 2, 3, 0), utc(2026, 6, 2, 8, 0)),  # after midnight, ends the same day
        (utc(2026, 6, 2, 8, 0), None),  # the end is outside
    ],
)
def test_a_window_across_midnight(at: datetime, ends: datetime | None) -> None:
    assert NIGHT.ends_at(at, ZoneInfo("UTC")) == ends


def test_a_window_within_one_day() -> None:
    lunch = QuietWindow(start="12:00", end="14:00")
    assert lunch.ends_at(utc(2026, 6, 1, 13, 0), ZoneInfo("UTC")) == utc(2026, 6, 1, 14, 0)
    assert lunch.ends_at(utc(2026, 6, 1, 14, 0), ZoneInfo("UTC")) is None
    assert lunch.ends_at(utc(2026, 6, 1, 11, 59), ZoneInfo("UTC")) is None


def test_the_window_follows_the_wall_clock_across_dst() -> None:
    paris = ZoneInfo("Europe/Paris")
    # 2026-03-29: clocks go 02:00 -> 03:00 (UTC+1 -> UTC+2). 21:00 on the 28th is 20:00 UTC; the
    # window ends at 08:00 local on the 29th, which is 06:00 UTC (not 07:00).
    assert NIGHT.ends_at(utc(2026, 3, 28, 20, 0), paris) == utc(2026, 3, 29, 6, 0)
    assert NIGHT.ends_at(utc(2026, 3, 28, 19, 59), paris) is None
    # 2026-10-25: clocks go 03:00 -> 02:00 (UTC+2 -> UTC+1): 08:00 local is 07:00 UTC.
    assert NIGHT.ends_at(utc(2026, 10, 24, 19, 0), paris) == utc(2026, 10, 25, 7, 0)
    assert NIGHT.ends_at(utc(2026, 10, 25, 6, 59), paris) == utc(2026, 10, 25, 7, 0)
    assert NIGHT.ends_at(utc(2026, 10, 25, 7, 0), paris) is None


def test_an_end_inside_the_spring_forward_gap() -> None:
    # 02:30 does not exist in Paris on 2026-03-29: read with the offset before the gap (UTC+1).
    window = QuietWindow(start="23:00", end="02:30")
    assert window.ends_at(utc(2026, 3, 28, 23, 0), ZoneInfo("Europe/Paris")) == utc(2026, 3, 29, 1, 30)


@pytest.mark.parametrize(
    ("zone", "inside_utc", "ends_utc"),
    [
        ("Asia/Kathmandu", utc(2026, 6, 1, 15, 15), utc(2026, 6, 2, 2, 15)),  # +05:45: 21:00 local
        ("America/St_Johns", utc(2026, 1, 10, 0, 30), utc(2026, 1, 10, 11, 30)),  # -03:30: 21:00
        ("Pacific/Chatham", utc(2026, 6, 1, 8, 15), utc(2026, 6, 1, 19, 15)),  # +12:45: 21:00
    ],
)
def test_odd_offset_zones(zone: str, inside_utc: datetime, ends_utc: datetime) -> None:
    tz = ZoneInfo(zone)
    assert NIGHT.ends_at(inside_utc, tz) == ends_utc
    assert NIGHT.ends_at(ends_utc, tz) is None


def test_defaults_and_overrides() -> None:
    tenant = TenantPolicy()
    assert tenant.sms.quiet_hours == NIGHT and tenant.email.quiet_hours is None
    eff = effective(tenant, CampaignPolicy(), "Europe/Paris")
    assert eff.quiet_hours == {"EMAIL": None, "SMS": NIGHT}
    assert eff.quiet_mode == QuietMode.WAIT and eff.frequency_caps == {"EMAIL": None, "SMS": None}
    capped = tenant.model_copy(
        update={
            "email": tenant.email.model_copy(update={"frequency_cap": FrequencyCap(max_messages=1, days=1)})
        }
    )
    override = CampaignPolicy.model_validate(
        {"quietHours": {"SMS": None, "EMAIL": {"start": "22:00", "end": "07:00"}}, "quietMode": "SKIP"}
    )
    eff = effective(capped, override)
    assert eff.quiet_hours["SMS"] is None and eff.quiet_hours["EMAIL"] == QuietWindow(
        start="22:00", end="07:00"
    )
    assert eff.quiet_mode == QuietMode.SKIP and eff.frequency_caps["EMAIL"] == FrequencyCap(
        max_messages=1, days=1
    )
    exempt = effective(capped, CampaignPolicy(ignore_frequency_cap=True))
    assert exempt.frequency_caps["EMAIL"] is None


def test_a_recipient_zone_falls_back_to_the_campaign_zone() -> None:
    eff = effective(TenantPolicy(), CampaignPolicy(), "America/New_York")
    assert eff.zone_for("Asia/Tokyo") == ZoneInfo("Asia/Tokyo")
    assert eff.zone_for(None) == ZoneInfo("America/New_York")
    assert eff.zone_for("Not/AZone") == ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    "body",
    [
        {"sms": {"quietHours": {"start": "25:00", "end": "08:00"}}},
        {"sms": {"quietHours": {"start": "08:00", "end": "08:00"}}},
        {"email": {"frequencyCap": {"maxMessages": 1}}},
        {"email": {"frequencyCap": {"maxMessages": 1, "hours": 2, "days": 1}}},
        {"email": {"frequencyCap": {"maxMessages": 0, "days": 1}}},
        {"autoPause": {"failureRate": 1.5}},
        {"quietMode": "LATER"},
        {"unknown": 1},
    ],
)
def test_bad_policies_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TenantPolicy.model_validate(body)
