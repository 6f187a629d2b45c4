"""Recipient-local delivery (README "Sending policies"), on the time-skipping server: one wave per
distinct UTC instant, each sent at its instant and not a minute before; a pause holds the waves
not yet sent; a RECURRING campaign delivers each run at local time."""

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text

from tests.conftest import Stack, StackFactory
from tests.factories import Audience, make_audience, make_templates
from tests.helpers import create_campaign, received_emails, wait_for

ZONES = ["Asia/Kathmandu", "America/St_Johns", "Asia/Tokyo", "America/Los_Angeles", None]


def z(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def next_local(after: datetime, zone: str, hour: int, minute: int = 0) -> datetime:
    """The first whole minute at or after `after` whose wall clock in `zone` reads hour:minute,
    found by walking minutes (independent of the code under test)."""
    at = after.astimezone(UTC).replace(second=0, microsecond=0)
    if at < after:
        at += timedelta(minutes=1)
    tz = ZoneInfo(zone)
    for _ in range(3 * 24 * 60):
        local = at.astimezone(tz)
        if (local.hour, local.minute) == (hour, minute):
            return at
        at += timedelta(minutes=1)
    raise AssertionError("no such local time within three days")


async def seed(stack: Stack, n_per_zone: int = 1) -> Audience:
    audience = await make_audience(stack.engine, stack.tenant, len(ZONES) * n_per_zone)
    async with stack.engine.begin() as conn:
        for i, customer in enumerate(audience.customers):
            await conn.execute(
                text("UPDATE customers SET timezone = :z WHERE id = :id"),
                {"z": ZONES[i % len(ZONES)], "id": customer["id"]},
            )
    return audience


def emails_of(audience: Audience, zone_index: int) -> set[str]:
    return {c["email"] for i, c in enumerate(audience.customers) if i % len(ZONES) == zone_index}


async def received(stack: Stack, audience: Audience, zone_index: int, timeout: float = 30) -> None:
    wanted = emails_of(audience, zone_index)
    deadline = asyncio.get_running_loop().time() + timeout
    while set(stack.smtp.counts(wanted)) != wanted:
        assert asyncio.get_running_loop().time() < deadline, (zone_index, stack.smtp.counts(wanted))
        await asyncio.sleep(0.05)


async def test_local_time_waves_across_five_zones_with_a_pause(make_timeskip_stack: StackFactory) -> None:
    stack = await make_timeskip_stack()
    audience = await seed(stack)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None, deliverAt={"localTime": "09:00"})
    started = await stack.env.get_current_time()
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    expected = sorted(
        (next_local(started, zone or "UTC", 9), i) for i, zone in enumerate(ZONES)
    )  # five distinct instants, +05:45 and -03:30 among them
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        body = (await stack.call("GET", f"/campaigns/{cid}")).json()
        if body["waves"] and len(body["waves"]) == len(ZONES):
            break
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)
    # Each wave is at its zone's 09:00 (within the minute the send started in) and holds one.
    for wave, (at, _) in zip(body["waves"], expected, strict=True):
        shown = datetime.fromisoformat(wave["at"].replace("Z", "+00:00"))
        assert at - timedelta(minutes=1) < shown <= at and wave["held"] == 1, (wave, at)
    assert sum(received_emails(stack, audience).values()) == 0

    for k, (at, zone_index) in enumerate(expected):
        now = await stack.env.get_current_time()
        if k == 2:  # paused across the third wave: it waits for a person's resume
            assert (await stack.call("POST", f"/campaigns/{cid}/pause")).status_code == 200
            await wait_for(stack, cid, "PAUSED")
            await stack.env.sleep(at - now + timedelta(minutes=5))
            await asyncio.sleep(0.5)
            assert sum(received_emails(stack, audience).values()) == k
            assert (await stack.call("POST", f"/campaigns/{cid}/resume")).status_code == 200
            await received(stack, audience, zone_index)
            continue
        if at - now > timedelta(minutes=2):
            await stack.env.sleep(at - now - timedelta(minutes=2))
            await asyncio.sleep(0.3)
            assert sum(received_emails(stack, audience).values()) == k, (k, "sent early")
        await stack.env.sleep(timedelta(minutes=3))
        await received(stack, audience, zone_index)
    body = await wait_for(stack, cid, "COMPLETED")
    assert set(received_emails(stack, audience).values()) == {1}
    assert body["sentCount"] == len(ZONES) and body["waves"] == []


async def test_a_recurring_campaign_delivers_each_run_at_local_time(
    make_timeskip_stack: StackFactory,
) -> None:
    stack = await make_timeskip_stack()
    audience = await seed(stack)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    r = await stack.call(
        "POST",
        "/campaigns",
        json={
            "tenantId": stack.tenant,
            "name": "Daily tee sheet",
            "type": "RECURRING",
            "segmentId": audience.segment_id,
            "channels": ["EMAIL"],
            "emailTemplateId": email_t,
            "schedule": {"frequency": "daily", "time": "06:00", "timezone": "UTC", "maxRuns": 2},
            "deliverAt": {"localTime": "09:00"},
        },
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    body = (await stack.call("GET", f"/campaigns/{cid}")).json()
    slot = datetime.fromisoformat(body["nextRunAt"].replace("Z", "+00:00"))
    for run in range(2):
        last = max(next_local(slot, zone or "UTC", 9) for zone in ZONES)
        now = await stack.env.get_current_time()
        await stack.env.sleep(last - now + timedelta(minutes=2))
        deadline = asyncio.get_running_loop().time() + 30
        while sum(received_emails(stack, audience).values()) < len(ZONES) * (run + 1):
            assert asyncio.get_running_loop().time() < deadline, received_emails(stack, audience)
            await asyncio.sleep(0.05)
        slot += timedelta(days=1)
    await wait_for(stack, cid, "COMPLETED")
    assert set(received_emails(stack, audience).values()) == {2}
