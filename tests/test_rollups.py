"""Roll-up details that the end-to-end stats tests cannot reach (a non-UTC database session)."""

from datetime import UTC, datetime, timedelta, timezone

from db.rollups import _Claimed, _hour, _tally


def test_timeline_hours_are_utc_hours_whatever_the_session_zone() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    at = datetime(2025, 12, 14, 15, 10, tzinfo=india)  # 09:40 UTC
    assert _hour(at) == datetime(2025, 12, 14, 9, 0, tzinfo=UTC)


def test_a_send_is_counted_per_channel_by_events_and_once_per_recipient_overall() -> None:
    """byChannel counts messages (events); only the top-level count needs who was sent to, so a
    SENT writes one first-of-a-kind row (ALL), an open one per channel and one overall."""
    at = datetime(2025, 12, 14, 9, 0, tzinfo=UTC)
    rows = [
        _Claimed("c", "cust1", "EMAIL", "SENT", at, None),
        _Claimed("c", "cust1", "SMS", "SENT", at + timedelta(seconds=1), None),
        _Claimed("c", "cust1", "EMAIL", "OPENED", at, "human"),
    ]
    events, firsts = _tally(rows)
    assert events[("c", "EMAIL", "SENT")] == 1 and events[("c", "SMS", "SENT")] == 1
    assert events[("c", "ALL", "SENT")] == 2
    assert set(firsts) == {
        ("c", "SENT", "ALL", "cust1"),
        ("c", "OPENED", "EMAIL", "cust1"),
        ("c", "OPENED", "ALL", "cust1"),
        ("c", "OPENED_HUMAN", "EMAIL", "cust1"),
        ("c", "OPENED_HUMAN", "ALL", "cust1"),
    }
    assert firsts[("c", "SENT", "ALL", "cust1")] == at  # the earlier of the two sends
