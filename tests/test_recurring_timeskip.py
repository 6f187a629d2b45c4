"""RECURRING campaigns on the time-skipping server (issue 6): the right UTC instants, for weeks.

Expected instants are written out by hand from the zone rules (not computed with the code under
test): Johannesburg is UTC+2 all year; London is UTC+0 in winter and UTC+1 from the last Sunday of
March 01:00 UTC to the last Sunday of October 01:00 UTC.
"""

import asyncio
import calendar
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text

from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import received_emails, wait_for


def z(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def recurring(stack: Stack, schedule: dict[str, Any], n: int = 2) -> tuple[str, Any]:
    audience = await make_audience(stack.engine, stack.tenant, n)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    r = await stack.call(
        "POST",
        "/campaigns",
        json={
            "tenantId": stack.tenant,
            "name": "Weekly tee times",
            "type": "RECURRING",
            "segmentId": audience.segment_id,
            "channels": ["EMAIL"],
            "emailTemplateId": email_t,
            "schedule": schedule,
        },
    )
    assert r.status_code == 201, r.text
    cid = str(r.json()["id"])
    r = await stack.call("POST", f"/campaigns/{cid}/execute")
    assert r.status_code == 200 and r.json()["status"] == "ACTIVE", r.text
    return cid, audience


async def until(stack: Stack, cid: str, runs: int, timeout: float = 30) -> dict[str, Any]:
    """Wait until the campaign has finished `runs` runs (the run's sends are done)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body: dict[str, Any] = (await stack.call("GET", f"/campaigns/{cid}")).json()
        if body["runCount"] >= runs:
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)


async def run_through(stack: Stack, cid: str, instants: list[datetime]) -> None:
    """Skip time to each expected instant; the run fires then, and not a minute before."""
    for k, at in enumerate(instants):
        body = (await stack.call("GET", f"/campaigns/{cid}")).json()
        assert body["runCount"] == k and body["nextRunAt"] == z(at), (k, body)
        now = await stack.env.get_current_time()
        await stack.env.sleep(at - now - timedelta(minutes=1))
        assert (await stack.call("GET", f"/campaigns/{cid}")).json()["runCount"] == k
        await stack.env.sleep(timedelta(minutes=2))
        body = await until(stack, cid, k + 1)
        fired = parse(body["lastRunAt"])
        assert at <= fired < at + timedelta(seconds=1), (k, body["lastRunAt"], at)


def next_weekday(after: datetime, isoweekday: int, hour: int) -> datetime:
    day = after.date() + timedelta(days=1)
    while day.isoweekday() != isoweekday:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def last_sunday(year: int, month: int) -> date:
    day = date(year, month, calendar.monthrange(year, month)[1])
    return day - timedelta(days=(day.isoweekday() % 7))


async def test_weekly_monday_0900_johannesburg_fires_at_0700_utc_for_weeks(
    make_fresh_timeskip_stack: StackFactory,
) -> None:
    stack = await make_fresh_timeskip_stack()
    cid, audience = await recurring(
        stack, {"frequency": "weekly", "dayOfWeek": 1, "time": "09:00", "timezone": "Africa/Johannesburg"}
    )
    first = next_weekday(await stack.env.get_current_time(), 1, 7)
    await run_through(stack, cid, [first + timedelta(weeks=k) for k in range(4)])
    assert sum(received_emails(stack, audience).values()) == 4 * 2
    stats = (await stack.call("GET", f"/campaigns/{cid}/stats")).json()
    assert [r["runNumber"] for r in stats["runs"]] == [4, 3, 2, 1]
    assert all(r["sent"] == 2 and r["targetCount"] == 2 for r in stats["runs"])
    assert stats["sentCount"] == 2 and stats["byChannel"]["EMAIL"]["sent"] == 8
    assert (await stack.call("POST", f"/campaigns/{cid}/cancel")).status_code == 200
    await wait_for(stack, cid, "CANCELLED")


async def test_daily_0130_london_runs_once_per_local_day_across_both_dst_changes(
    make_fresh_timeskip_stack: StackFactory,
) -> None:
    stack = await make_fresh_timeskip_stack()
    now = await stack.env.get_current_time()
    year = now.year + 1  # both changes of next year lie ahead of the server clock
    spring = last_sunday(year, 3)  # 01:00 UTC: clocks go 01:00 GMT -> 02:00 BST
    autumn = last_sunday(year, 10)  # 01:00 UTC: clocks go 02:00 BST -> 01:00 GMT

    def utc(day: date, hour: int, minute: int) -> datetime:
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)

    d = timedelta(days=1)
    cid, _ = await recurring(
        stack,
        {
            "frequency": "daily",
            "time": "01:30",
            "timezone": "Europe/London",
            "startAt": z(utc(spring - 2 * d, 0, 0)),
            "endAt": z(utc(spring + 2 * d, 12, 0)),
        },
        n=1,
    )
    await run_through(
        stack,
        cid,
        [
            utc(spring - 2 * d, 1, 30),  # GMT
            utc(spring - d, 1, 30),
            utc(spring, 1, 0),  # 01:30 does not exist: the first valid instant, 02:00 BST
            utc(spring + d, 0, 30),  # BST
            utc(spring + 2 * d, 0, 30),
        ],
    )
    body = await wait_for(stack, cid, "COMPLETED")  # endAt reached
    assert body["runCount"] == 5 and body["nextRunAt"] is None

    cid, _ = await recurring(
        stack,
        {
            "frequency": "daily",
            "time": "01:30",
            "timezone": "Europe/London",
            "startAt": z(utc(autumn - d, 0, 0)),
            "maxRuns": 3,
        },
        n=1,
    )
    await run_through(
        stack,
        cid,
        [
            utc(autumn - d, 0, 30),  # BST
            utc(autumn, 0, 30),  # 01:30 happens twice: once, at its first occurrence (BST)
            utc(autumn + d, 1, 30),  # GMT
        ],
    )
    body = await wait_for(stack, cid, "COMPLETED")  # maxRuns reached
    assert body["runCount"] == 3 and body["nextRunAt"] is None


async def test_monthly_on_the_31st_runs_on_the_last_day_of_shorter_months(
    make_fresh_timeskip_stack: StackFactory,
) -> None:
    stack = await make_fresh_timeskip_stack()
    now = await stack.env.get_current_time()
    cid, _ = await recurring(
        stack, {"frequency": "monthly", "dayOfMonth": 31, "time": "06:00", "timezone": "UTC", "maxRuns": 4}
    )
    instants: list[datetime] = []
    year, month = now.year, now.month
    while len(instants) < 4:
        last = calendar.monthrange(year, month)[1]
        at = datetime(year, month, last, 6, tzinfo=UTC)
        if at > now:
            instants.append(at)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    assert any(i.day < 31 for i in instants)
    await run_through(stack, cid, instants)
    await wait_for(stack, cid, "COMPLETED")


async def test_a_run_that_falls_inside_a_pause_is_skipped_not_sent_late(
    make_fresh_timeskip_stack: StackFactory,
) -> None:
    stack = await make_fresh_timeskip_stack()
    cid, audience = await recurring(stack, {"frequency": "daily", "time": "09:00", "timezone": "UTC"})
    now = await stack.env.get_current_time()
    first = datetime(now.year, now.month, now.day, 9, tzinfo=UTC)
    if first <= now:
        first += timedelta(days=1)
    await run_through(stack, cid, [first])
    assert (await stack.call("POST", f"/campaigns/{cid}/pause")).status_code == 200
    await stack.env.sleep(timedelta(days=1, hours=1))  # the run of first + 1 day falls inside
    r = await stack.call("POST", f"/campaigns/{cid}/resume")
    assert r.status_code == 200, r.text
    body = (await stack.call("GET", f"/campaigns/{cid}")).json()
    assert body["runCount"] == 1 and body["nextRunAt"] == z(first + timedelta(days=2)), body
    await run_through_from(stack, cid, 1, [first + timedelta(days=2)])
    assert sum(received_emails(stack, audience).values()) == 2 * 2
    assert (await stack.call("POST", f"/campaigns/{cid}/cancel")).status_code == 200


async def run_through_from(stack: Stack, cid: str, done: int, instants: list[datetime]) -> None:
    for k, at in enumerate(instants, start=done):
        now = await stack.env.get_current_time()
        await stack.env.sleep(at - now + timedelta(minutes=1))
        body = await until(stack, cid, k + 1)
        assert at <= parse(body["lastRunAt"]) < at + timedelta(seconds=1)


async def test_history_stays_small_after_100_runs(make_fresh_timeskip_stack: StackFactory) -> None:
    await _hundred_runs(await make_fresh_timeskip_stack())


async def _hundred_runs(stack: Stack) -> None:
    cid, audience = await recurring(
        stack, {"frequency": "daily", "time": "04:00", "timezone": "UTC", "maxRuns": 100}, n=1
    )
    # Skip to each run and let it finish before the next skip: a skip never has to wait for a
    # run's activities (long skips over busy runs can outlast the test server's RPC deadline).
    for k in range(100):
        at = parse((await stack.call("GET", f"/campaigns/{cid}")).json()["nextRunAt"])
        await stack.env.sleep(at - await stack.env.get_current_time() + timedelta(minutes=1))
        await until(stack, cid, k + 1)
    body = await wait_for(stack, cid, "COMPLETED", timeout=60)
    handle = stack.client.get_workflow_handle(f"campaign-{cid}")
    assert body["runCount"] == 100
    assert sum(received_emails(stack, audience).values()) == 100
    # Every run continued-as-new: the latest run's history is a few dozen events, not thousands.
    events = [e async for e in handle.fetch_history_events()]
    assert len(events) < 200, len(events)


async def test_a_run_whose_segment_was_deleted_pauses_instead_of_failing(
    make_fresh_timeskip_stack: StackFactory,
) -> None:
    stack = await make_fresh_timeskip_stack()
    cid, audience = await recurring(stack, {"frequency": "daily", "time": "10:00", "timezone": "UTC"})
    async with stack.engine.begin() as conn:
        for table, column in (("segment_members", "segment_id"), ("segments", "id")):
            await conn.execute(text(f"DELETE FROM {table} WHERE {column} = :s"), {"s": audience.segment_id})
    await stack.env.sleep(timedelta(days=1, hours=1))
    body = await wait_for(stack, cid, "PAUSED")
    assert body["runCount"] == 0 and body["nextRunAt"] is None
    assert "segment" in body["lastError"]
    assert (await stack.call("POST", f"/campaigns/{cid}/cancel")).status_code == 200
    await wait_for(stack, cid, "CANCELLED")
