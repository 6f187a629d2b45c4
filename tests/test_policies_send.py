"""Sending policies through the real stack (README "Sending policies"): the tenant policy API,
frequency caps between two concurrent campaigns, quiet hours skipped in the recipient's zone, and
auto-pause on a provider that refuses everyone."""

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, text

from core.ids import new_id
from db.models import Segment, SegmentMember
from tests.conftest import StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import (
    auto_paused_by_refusals,
    create_campaign,
    ledger,
    put_policy,
    received_emails,
    received_sms,
    wait_for,
)


def hhmm(at: datetime) -> str:
    return at.strftime("%H:%M")


async def test_a_policy_put_without_sms_rules_takes_the_deployment_default(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False, sms_quiet_hours_default="22:30-07:15")
    path = f"/tenants/{stack.tenant}/policy"
    assert (await stack.call("GET", path)).json()["sms"]["quietHours"] == {"start": "22:30", "end": "07:15"}
    r = await stack.call("PUT", path, json={"seeds": {"emails": ["seed@monitor.example"]}})
    assert r.status_code == 200, r.text
    stored = (await stack.call("GET", path)).json()
    assert stored["sms"]["quietHours"] == {"start": "22:30", "end": "07:15"}
    assert stored["seeds"]["emails"] == ["seed@monitor.example"]
    r = await stack.call("PUT", path, json={"sms": {"quietHours": None}})  # named: none
    assert r.status_code == 200 and (await stack.call("GET", path)).json()["sms"]["quietHours"] is None


async def test_the_tenant_policy_api(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    path = f"/tenants/{stack.tenant}/policy"
    r = await stack.call("GET", path)
    assert r.status_code == 200, r.text
    default = r.json()
    assert default["email"] == {"quietHours": None, "frequencyCap": None}
    assert default["quietMode"] == "WAIT" and default["autoPause"]["enabled"] is True
    body = {
        "email": {"frequencyCap": {"maxMessages": 2, "days": 1}},
        "sms": {"quietHours": {"start": "20:30", "end": "09:00"}},
        "quietMode": "SKIP",
        "autoPause": {"failureRate": 0.4, "window": 50, "minMessages": 20},
    }
    r = await stack.call("PUT", path, json=body)
    assert r.status_code == 200, r.text
    stored = (await stack.call("GET", path)).json()
    assert stored["email"]["frequencyCap"] == {"maxMessages": 2, "hours": None, "days": 1}
    assert stored["sms"]["quietHours"] == {"start": "20:30", "end": "09:00"}
    assert stored["quietMode"] == "SKIP" and stored["autoPause"]["failureRate"] == 0.4
    for bad in (
        {"sms": {"quietHours": {"start": "9pm", "end": "08:00"}}},
        {"email": {"frequencyCap": {"maxMessages": 1}}},
        {"autoPause": {"window": 1}},
        {"surprise": True},
    ):
        r = await stack.call("PUT", path, json=bad)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    assert (await stack.call("GET", path)).json() == stored  # a refused PUT changed nothing
    # A field left out takes its default; for SMS that is the deployment's (empty here: none).
    r = await stack.call("PUT", path, json={"requireApproval": True})
    assert r.status_code == 200 and r.json()["sms"]["quietHours"] is None, r.text
    assert (await stack.call("GET", path)).json()["sms"] == {"quietHours": None, "frequencyCap": None}
    assert (await stack.call("PUT", path, json=stored)).status_code == 200
    # Another tenant's policy is neither readable nor writable.
    other = f"/tenants/{stack.other_tenant}/policy"
    assert (await stack.call("GET", other)).status_code in (403, 404)
    assert (await stack.call("PUT", other, json=body)).status_code in (403, 404)


async def test_a_frequency_cap_holds_between_two_concurrent_campaigns(make_stack: StackFactory) -> None:
    """Cap of 1 email a day: two campaigns over overlapping segments, started together; every
    person gets exactly one email, the other message is FREQUENCY_CAP, and the counts add up."""
    stack = await make_stack(batch_size=25)
    await put_policy(stack, {"email": {"frequencyCap": {"maxMessages": 1, "days": 1}}})
    audience = await make_audience(stack.engine, stack.tenant, 90)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    # The second segment: the last 60 of the first (30 people only in the first, 60 in both).
    second = new_id("segment")
    async with stack.engine.begin() as conn:
        await conn.execute(
            insert(Segment).values(
                id=second, tenant_id=stack.tenant, club_id="club_1", name="B", type="STATIC"
            )
        )
        await conn.execute(
            insert(SegmentMember),
            [{"segment_id": second, "customer_id": c["id"]} for c in audience.customers[30:]],
        )
    first_id = await create_campaign(stack, audience, email_t, None)
    second_id = await create_campaign(stack, audience, email_t, None, segmentId=second)
    results = await asyncio.gather(
        stack.call("POST", f"/campaigns/{first_id}/execute"),
        stack.call("POST", f"/campaigns/{second_id}/execute"),
    )
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    first = await wait_for(stack, first_id, "COMPLETED")
    second_body = await wait_for(stack, second_id, "COMPLETED")
    received = received_emails(stack, audience)
    assert set(received.values()) == {1} and len(received) == 90  # everyone exactly once
    rows = await ledger(stack, first_id) + await ledger(stack, second_id)
    outcomes = Counter((r["outcome"], r.get("reason")) for r in rows)
    assert outcomes[("SENT", None)] == 90
    assert outcomes[("SKIPPED", "FREQUENCY_CAP")] == 60
    assert len(rows) == 150
    assert first["sentCount"] + second_body["sentCount"] == 90
    assert first["skippedCount"] + second_body["skippedCount"] == 60


async def test_quiet_hours_skip_in_each_recipients_zone(make_stack: StackFactory) -> None:
    """A campaign that skips rather than waits: SMS to people whose local time is inside the window
    are SKIPPED QUIET_HOURS, the others are sent; email (no window) goes to everyone."""
    stack = await make_stack()
    audience = await make_audience(stack.engine, stack.tenant, 6)
    now = datetime.now(UTC)
    # A window that holds Dhaka's local time (UTC+6, no DST) now, and not UTC's.
    window = {"start": hhmm(now + timedelta(hours=5)), "end": hhmm(now + timedelta(hours=7))}
    night_ids = [c["id"] for c in audience.customers[:3]]
    async with stack.engine.begin() as conn:
        await conn.execute(
            text("UPDATE customers SET timezone = 'Asia/Dhaka' WHERE id = ANY(:ids)"), {"ids": night_ids}
        )
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(
        stack, audience, email_t, sms_t, policy={"quietHours": {"SMS": window}, "quietMode": "SKIP"}
    )
    assert (await stack.call("GET", f"/campaigns/{cid}")).json()["policy"]["quietMode"] == "SKIP"
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED")
    rows = await ledger(stack, cid)
    sms = {r["customerId"]: r for r in rows if r["channel"] == "SMS"}
    for customer in audience.customers:
        row = sms[customer["id"]]
        if customer["id"] in night_ids:
            assert (row["outcome"], row["reason"]) == ("SKIPPED", "QUIET_HOURS")
        else:
            assert row["outcome"] == "SENT"
    phones = received_sms(stack, audience)
    assert sum(phones.values()) == 3
    assert set(received_emails(stack, audience).values()) == {1}


async def test_auto_pause_stops_a_campaign_the_provider_refuses(make_stack: StackFactory) -> None:
    stack = await make_stack(batch_size=20, pages_in_flight=1)
    rule = {"failureRate": 0.5, "window": 40, "minMessages": 20}
    audience, cid, _ = await auto_paused_by_refusals(stack, 200, rule)
    await asyncio.sleep(1.5)  # nothing more goes out after the pause
    rows = await ledger(stack, cid)
    decided = [r for r in rows if r["outcome"] != "PENDING"]
    assert 20 <= len(decided) <= 60, len(decided)  # stopped after a page or two, not 200
    assert {r["outcome"] for r in decided} == {"BOUNCED"}
    attempts = sum(stack.smtp.refused[c["email"]] for c in audience.customers)
    await asyncio.sleep(1.0)
    assert sum(stack.smtp.refused[c["email"]] for c in audience.customers) == attempts
    assert (await stack.call("GET", f"/campaigns/{cid}")).json()["status"] == "PAUSED"


async def test_the_estimate_equals_what_the_send_then_does(make_stack: StackFactory) -> None:
    """A seeded audience with every skip reason the rules can give: the estimate, then the send;
    the ledger holds, per channel and reason, exactly what the estimate said."""
    stack = await make_stack(batch_size=15)
    await put_policy(stack, {"email": {"frequencyCap": {"maxMessages": 1, "days": 1}}, "quietMode": "SKIP"})
    audience = await make_audience(stack.engine, stack.tenant, 40, no_phone_every=7, email_opt_out_every=9)
    now = datetime.now(UTC)
    window = {"start": hhmm(now + timedelta(hours=5)), "end": hhmm(now + timedelta(hours=7))}
    c = audience.customers
    async with stack.engine.begin() as conn:
        await conn.execute(
            text("UPDATE customers SET email_unsubscribed_at = now() WHERE id = ANY(:ids)"),
            {"ids": [c[2]["id"]]},
        )
        await conn.execute(
            text("UPDATE customers SET email_bounced_at = now() WHERE id = ANY(:ids)"), {"ids": [c[3]["id"]]}
        )
        await conn.execute(
            text("UPDATE customers SET timezone = 'Asia/Dhaka' WHERE id = ANY(:ids)"),
            {"ids": [x["id"] for x in c[10:16]]},
        )
        await conn.execute(
            text(
                "INSERT INTO suppressions (id, tenant_id, channel, address) VALUES (:i1, :t, 'EMAIL', :e),"
                " (:i2, :t, 'SMS', :p)"
            ),
            {
                "i1": new_id("suppression"),
                "i2": new_id("suppression"),
                "t": stack.tenant,
                "e": c[4]["email"],
                "p": c[5]["phone"],
            },
        )
        await conn.execute(  # already messaged today by another campaign
            text(
                "INSERT INTO frequency_holds (run_id, customer_id, channel, tenant_id)"
                " SELECT 'elsewhere.r1', id, 'EMAIL', :t FROM unnest(CAST(:ids AS text[])) id"
            ),
            {"t": stack.tenant, "ids": [x["id"] for x in c[20:26]]},
        )
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t, policy={"quietHours": {"SMS": window}})
    r = await stack.call("GET", f"/campaigns/{cid}/estimate")
    assert r.status_code == 200, r.text
    est = r.json()
    assert est["audience"] == 40 and est["exact"] is True
    # Every reason the seed planted shows up.
    assert set(est["channels"]["EMAIL"]["skipped"]) == {
        "UNSUBSCRIBED",
        "HARD_BOUNCED",
        "SUPPRESSED",
        "NO_CONSENT",
        "FREQUENCY_CAP",
    }
    assert set(est["channels"]["SMS"]["skipped"]) == {"NO_ADDRESS", "SUPPRESSED", "QUIET_HOURS"}
    assert est["channels"]["SMS"]["smsSegments"] == est["channels"]["SMS"]["toSend"]  # one segment each
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED")
    rows = await ledger(stack, cid)
    for channel in ("EMAIL", "SMS"):
        mine = [r for r in rows if r["channel"] == channel]
        skipped = Counter(r["reason"] for r in mine if r["outcome"] == "SKIPPED")
        assert dict(skipped) == est["channels"][channel]["skipped"], channel
        assert sum(1 for r in mine if r["outcome"] == "SENT") == est["channels"][channel]["toSend"]
        assert not [r for r in mine if r["outcome"] == "FAILED"] and not est["channels"][channel]["failed"]
    # Nothing was written by the estimate: the only holds are the seed's and the send's.
    async with stack.engine.connect() as conn:
        holds = (
            await conn.execute(
                text("SELECT count(*) FROM frequency_holds WHERE tenant_id = :t"), {"t": stack.tenant}
            )
        ).scalar_one()
    assert holds == 6 + est["channels"]["EMAIL"]["toSend"]
