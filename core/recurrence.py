"""When a RECURRING campaign runs next (README "Campaign types"): local wall-clock times in an IANA zone.

Pure and deterministic (zoneinfo reads the packaged tz database; no clock is consulted), so the
workflow computes its own timers. DST rules:
- a local time that does not exist (spring forward) runs at the first valid instant after it, i.e.
  the instant the clocks jump (01:30 in a 01:00→02:00 gap runs at 02:00 new time);
- a local time that occurs twice (fall back) runs once, at its first occurrence;
- monthly on a day the month lacks (the 31st in April) runs on the month's last day.
"""

import calendar
from datetime import UTC, date, datetime, timedelta
from datetime import time as WallTime
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

# Looking further ahead than this for a next run means the schedule can never fire.
MAX_LOOKAHEAD_DAYS = 400


class Frequency(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class RecurringSchedule(BaseModel):
    """The schedule of a RECURRING campaign (the API stores it camelCase; both spellings load)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    frequency: Frequency
    time: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    timezone: str = "UTC"
    day_of_week: int | None = Field(default=None, ge=1, le=7)  # 1 = Monday … 7 = Sunday
    day_of_month: int | None = Field(default=None, ge=1, le=31)
    start_at: datetime | None = None
    end_at: datetime | None = None
    max_runs: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _days_fit_frequency(self) -> "RecurringSchedule":
        if self.frequency == Frequency.WEEKLY and self.day_of_week is None:
            raise ValueError("dayOfWeek is required for a weekly schedule")
        if self.frequency == Frequency.MONTHLY and self.day_of_month is None:
            raise ValueError("dayOfMonth is required for a monthly schedule")
        return self

    @property
    def local_time(self) -> WallTime:
        hours, minutes = self.time.split(":")
        return WallTime(int(hours), int(minutes))


def local_to_utc(day: date, at: WallTime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time, resolving DST gaps and folds as documented."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=zone, fold=0)
    utc = first.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) == naive:
        return utc  # exists (for an ambiguous time, fold=0 is its first occurrence)
    # In a gap: fold=0 reads it with the offset before the jump, fold=1 with the offset after.
    # The jump lies between those two readings; find the first minute whose local time is past it.
    low = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = utc
    if low > high:
        low, high = high, low
    while high - low > timedelta(minutes=1):
        middle = low + (high - low) / 2
        middle = middle.replace(second=0, microsecond=0)
        if middle <= low:
            break
        if middle.astimezone(zone).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return high


def _candidate_days(schedule: RecurringSchedule, start: date) -> list[date]:
    """Local dates from `start` on (a little over a year) on which the schedule fires."""
    days: list[date] = []
    for offset in range(MAX_LOOKAHEAD_DAYS):
        day = start + timedelta(days=offset)
        if schedule.frequency == Frequency.DAILY:
            days.append(day)
        elif schedule.frequency == Frequency.WEEKLY:
            if day.isoweekday() == schedule.day_of_week:
                days.append(day)
        else:
            assert schedule.day_of_month is not None
            last = calendar.monthrange(day.year, day.month)[1]
            if day.day == min(schedule.day_of_month, last):
                days.append(day)
    return days


def next_run_after(schedule: RecurringSchedule, after: datetime) -> datetime | None:
    """The first run instant strictly after `after` (UTC), or None when the schedule has ended.

    `start_at` moves the earliest run; `end_at` is the last instant a run may start at.
    `max_runs` is the caller's to count.
    """
    zone = ZoneInfo(schedule.timezone)
    floor = after
    if schedule.start_at is not None and schedule.start_at > floor:
        floor = schedule.start_at - timedelta(microseconds=1)
    # Start a day early: a run on the previous local date may still lie after `floor` in UTC.
    start = floor.astimezone(zone).date() - timedelta(days=1)
    for day in _candidate_days(schedule, start):
        at = local_to_utc(day, schedule.local_time, zone)
        if at > floor:
            if schedule.end_at is not None and at > schedule.end_at:
                return None
            return at
    return None
