"""Roll-up details that the end-to-end stats tests cannot reach (a non-UTC database session)."""

from datetime import UTC, datetime, timedelta, timezone

from db.rollups import _hour


def test_timeline_hours_are_utc_hours_whatever_the_session_zone() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    at = datetime(2025, 12, 14, 15, 10, tzinfo=india)  # 09:40 UTC
    assert _hour(at) == datetime(2025, 12, 14, 9, 0, tzinfo=UTC)
