"""Sending policies that wait (README "Sending policies"), on the time-skipping server: messages
held by quiet hours go out when each recipient's window ends, in their own zone, across midnight
and a DST change, and a pause holds them longer; a deferred frequency cap sends when it frees."""

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tests.conftest import Stack, StackFactory
from tests.factories import Audience, make_audience, make_templates
from tests.helpers import create_campaign, ledger, received_emails, received_sms, wait_for
from tests.test_recurring_timeskip import last_sunday


def hhmm(at: datetime) -> str:
    return at.strftime("%H:%M")


async def sent_to(stack: Stack, audience: Audience, indexes: range, count: int, timeout: float = 30) -> None:
    """Wait until the sink holds exactly `count` SMS over these customers' phones."""
    phones = {audience.customers[i]["phone"] for i in indexes}
    deadline = asyncio.get_running_loop().time() + timeout
    while sum(stack.sms.counts(phones).values()) < count:
        assert asyncio.get_running_loop().time() < deadline, stack.sms.counts(phones)
        await asyncio.sleep(0.05)
    assert sum(stack.sms.counts(phones).values()) == count


async def test_held_sms_go_out_when_each_zone_window_ends_and_a_pause_holds_them(
    make_timeskip_stack: StackFactory,
) -> None:
    stack = await make_timeskip_stack()
    now = await stack.env.get_current_time()
    # The window [now-1h, now+2h) of local time: UTC recipients are inside until now+2h, Lagos
    # (UTC+1, no DST) until now+1h, Kathmandu (UTC+5:45) is outside and is sent at once.
    window = {"start": hhmm(now - timedelta(hours=1)), "end": hhmm(now + timedelta(hours=2))}
    audience = await make_audience(stack.engine, stack.tenant, 6)
    zones = [None, None, "Africa/Lagos", "Africa/Lagos", "Asia/Kathmandu", "Asia/Kathmandu"]
    async with stack.engine.begin() as conn:
        for customer, zone in zip(audience.customers, zones, strict=True):
            await conn.execute(
                text("UPDATE customers SET timezone = :z WHERE id = :id"), {"z": zone, "id": customer["id"]}
            )
    _, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, None, sms_t, policy={"quietHours": {"SMS": window}})
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200

    await sent_to(stack, audience, range(4, 6), 2)  # Kathmandu: outside the window
    await asyncio.sleep(0.5)
    assert sum(received_sms(stack, audience).values()) == 2
    assert {r["customerId"] for r in await ledger(stack, cid)} == {c["id"] for c in audience.customers[4:]}
    assert (await stack.call("GET", f"/campaigns/{cid}")).json()["status"] == "ACTIVE"

    # Paused across Lagos' window end: nothing goes out until a person resumes.
    assert (await stack.call("POST", f"/campaigns/{cid}/pause")).status_code == 200
    await wait_for(stack, cid, "PAUSED")
    await stack.env.sleep(timedelta(hours=1, minutes=1))
    await asyncio.sleep(1.0)
    assert sum(received_sms(stack, audience).values()) == 2
    assert (await stack.call("POST", f"/campaigns/{cid}/resume")).status_code == 200
    await sent_to(stack, audience, range(2, 4), 2)  # Lagos, due since the pause
    await asyncio.sleep(0.5)
    assert sum(received_sms(stack, audience).values()) == 4  # UTC still inside its window

    await stack.env.sleep(timedelta(hours=1))
    await sent_to(stack, audience, range(0, 2), 2)
    body = await wait_for(stack, cid, "COMPLETED")
    assert set(received_sms(stack, audience).values()) == {1}  # each phone exactly once
    rows = await ledger(stack, cid)
    assert len(rows) == 6 and {r["outcome"] for r in rows} == {"SENT"}
    assert body["sentCount"] == 6


async def test_a_window_across_midnight_and_the_spring_dst_change(
    make_fresh_timeskip_stack: StackFactory,
) -> None:
    """Paris, the night clocks go forward: an SMS held at 21:30 on Saturday waits for 08:00 on
    Sunday on the wall clock, which is 06:00 UTC (07:00 on any other night)."""
    stack = await make_fresh_timeskip_stack()
    now = await stack.env.get_current_time()
    year = now.year + 1
    sunday = last_sunday(year, 3)
    saturday_evening = datetime(sunday.year, sunday.month, sunday.day, tzinfo=UTC) - timedelta(
        hours=2, minutes=30
    )
    await stack.env.sleep(saturday_evening - now)  # 21:30 CET on Saturday
    r = await stack.call(
        "PUT",
        f"/tenants/{stack.tenant}/policy",
        json={"sms": {"quietHours": {"start": "21:00", "end": "08:00"}}},
    )
    assert r.status_code == 200, r.text
    audience = await make_audience(stack.engine, stack.tenant, 3)
    _, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, None, sms_t, timezone="Europe/Paris")
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    release = datetime(sunday.year, sunday.month, sunday.day, 6, tzinfo=UTC)
    deadline = asyncio.get_running_loop().time() + 30
    while not (body := (await stack.call("GET", f"/campaigns/{cid}")).json())["targetCount"]:
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    assert sum(received_sms(stack, audience).values()) == 0
    await stack.env.sleep(release - timedelta(minutes=2) - await stack.env.get_current_time())
    await asyncio.sleep(1.0)
    assert sum(received_sms(stack, audience).values()) == 0  # 07:58 CEST: still quiet
    await stack.env.sleep(timedelta(minutes=3))
    await sent_to(stack, audience, range(0, 3), 3)
    await wait_for(stack, cid, "COMPLETED")
    assert {r["outcome"] for r in await ledger(stack, cid)} == {"SENT"}


async def test_a_deferred_frequency_cap_sends_when_the_cap_frees_a_place(
    make_fresh_timeskip_stack: StackFactory,
) -> None:
    """Cap of one email an hour: a second campaign that defers waits an hour for each person,
    then sends. Its own server: the estimate judges at the API's clock, which a shared server
    that earlier tests moved ahead would not match."""
    stack = await make_fresh_timeskip_stack()
    r = await stack.call(
        "PUT",
        f"/tenants/{stack.tenant}/policy",
        json={"email": {"frequencyCap": {"maxMessages": 1, "hours": 1}}},
    )
    assert r.status_code == 200, r.text
    audience = await make_audience(stack.engine, stack.tenant, 4)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    first = await create_campaign(stack, audience, email_t, None)
    assert (await stack.call("POST", f"/campaigns/{first}/execute")).status_code == 200
    await wait_for(stack, first, "COMPLETED")
    deferring = {"frequencyCapMode": "DEFER", "deferLimitHours": 2}
    second = await create_campaign(stack, audience, email_t, None, policy=deferring)
    est = (await stack.call("GET", f"/campaigns/{second}/estimate")).json()
    assert est["channels"]["EMAIL"]["held"] == 4 and est["channels"]["EMAIL"]["skipped"] == {}
    assert (await stack.call("POST", f"/campaigns/{second}/execute")).status_code == 200
    deadline = asyncio.get_running_loop().time() + 30
    while not (await stack.call("GET", f"/campaigns/{second}")).json()["targetCount"]:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    assert set(received_emails(stack, audience).values()) == {1}  # the second waits
    await stack.env.sleep(timedelta(hours=1, minutes=1))
    await wait_for(stack, second, "COMPLETED")
    assert set(received_emails(stack, audience).values()) == {2}
    assert {r["outcome"] for r in await ledger(stack, second)} == {"SENT"}
