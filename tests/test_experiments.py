"""Experiments (README "Holdout groups"): a holdout group is drawn stably from the campaign and
customer ids, recorded SKIPPED HOLDOUT and never messaged; the estimate knows it in advance."""

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from core.experiments import ABTest
from core.policy import in_holdout
from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, ledger, received_emails, received_sms, wait_for


def test_the_holdout_draw_is_stable_and_near_its_share() -> None:
    ids = [f"customer_{i:05d}" for i in range(20_000)]
    held = [i for i in ids if in_holdout("campaign_x", i, 10)]
    assert 1_850 <= len(held) <= 2_150  # 10% +- 7.5%
    assert held == [i for i in ids if in_holdout("campaign_x", i, 10)]  # the same draw again
    assert set(held) != {i for i in ids if in_holdout("campaign_y", i, 10)}  # per campaign
    assert not any(in_holdout("campaign_x", i, 0) for i in ids[:100])


async def test_a_holdout_group_gets_nothing(make_stack: StackFactory) -> None:
    stack = await make_stack(batch_size=200)
    audience = await make_audience(stack.engine, stack.tenant, 1_000)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t, holdoutPercent=10)
    body = (await stack.call("GET", f"/campaigns/{cid}")).json()
    assert body["holdoutPercent"] == 10
    est = (await stack.call("GET", f"/campaigns/{cid}/estimate")).json()
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED")
    held = {c["id"] for c in audience.customers if in_holdout(cid, c["id"], 10)}
    assert 50 <= len(held) <= 150
    rows = await ledger(stack, cid)
    holdout_rows = [r for r in rows if r["reason"] == "HOLDOUT"]
    assert {r["customerId"] for r in holdout_rows} == held
    assert Counter(r["channel"] for r in holdout_rows) == {"EMAIL": len(held), "SMS": len(held)}
    assert {r["outcome"] for r in holdout_rows} == {"SKIPPED"}
    emails = received_emails(stack, audience)
    phones = received_sms(stack, audience)
    for customer in audience.customers:
        expected = 0 if customer["id"] in held else 1
        assert emails[customer["email"]] == expected and phones[customer["phone"]] == expected
    assert est["channels"]["EMAIL"]["skipped"]["HOLDOUT"] == len(held)
    assert est["channels"]["EMAIL"]["toSend"] == 1_000 - len(held)


async def counted(stack: Stack, cid: str) -> dict[str, Any]:
    """The campaign's /stats without the fields that say how fresh they are."""
    body: dict[str, Any] = (await stack.call("GET", f"/campaigns/{cid}/stats")).json()
    return {k: v for k, v in body.items() if k not in ("asOf", "rollupLagSeconds", "freshness")}


async def test_test_sends_reach_only_the_given_addresses_and_no_stats(make_stack: StackFactory) -> None:
    stack = await make_stack()
    audience = await make_audience(stack.engine, stack.tenant, 3)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t)
    stats_before = await counted(stack, cid)
    first = audience.customers[1]
    r = await stack.call(
        "POST",
        f"/campaigns/{cid}/test-send",
        json={"emails": ["Marketer@Example.org"], "phones": ["+27821234567"], "customerId": first["id"]},
    )
    assert r.status_code == 200, r.text
    assert [(o["channel"], o["address"], o["sent"]) for o in r.json()["results"]] == [
        ("EMAIL", "marketer@example.org", True),
        ("SMS", "+27821234567", True),
    ]
    mails = [m for m in stack.smtp.snapshot() if m.to == "marketer@example.org"]
    assert len(mails) == 1 and mails[0].message["X-Campaigns-Test"] == "true"
    assert mails[0].message["Subject"].startswith("[TEST] Hello First1")  # rendered as that customer
    assert stack.sms.counts({"+27821234567"})["+27821234567"] == 1
    assert sum(received_emails(stack, audience).values()) == 0  # nobody of the audience
    assert sum(received_sms(stack, audience).values()) == 0
    assert await counted(stack, cid) == stats_before
    assert await ledger(stack, cid) == []
    assert (await stack.call("GET", f"/campaigns/{cid}")).json()["status"] == "DRAFT"
    # Bad input changes nothing; another tenant cannot; the budget runs out with a 429.
    for bad in ({}, {"emails": ["not-an-address"]}, {"phones": ["0821234567"]}, {"emails": ["a@b.co"] * 11}):
        assert (await stack.call("POST", f"/campaigns/{cid}/test-send", json=bad)).status_code == 422
    r = await stack.call(
        "POST", f"/campaigns/{cid}/test-send", tenant=stack.other_tenant, json={"emails": ["a@b.co"]}
    )
    assert r.status_code == 404
    statuses = [
        (
            await stack.call(
                "POST",
                f"/campaigns/{cid}/test-send",
                json={"emails": [f"t{i}@example.org" for i in range(10)]},
            )
        ).status_code
        for _ in range(5)
    ]
    assert statuses == [200, 200, 200, 200, 429]  # 2 + 40 sent, 10 more would pass the 50


async def test_seed_addresses_get_one_copy_per_campaign_and_channel(make_stack: StackFactory) -> None:
    stack = await make_stack(batch_size=10, pages_in_flight=2)
    seeds = {"emails": ["Inbox-Monitor@Seeds.example"], "phones": ["+27820000001"]}
    r = await stack.call("PUT", f"/tenants/{stack.tenant}/policy", json={"seeds": seeds})
    assert r.status_code == 200, r.text
    audience = await make_audience(stack.engine, stack.tenant, 30)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    for round_ in (1, 2):  # each campaign: one copy per seed and channel, whatever its pages
        cid = await create_campaign(stack, audience, email_t, sms_t)
        assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
        body = await wait_for(stack, cid, "COMPLETED")
        assert body["sentCount"] == 30  # the copies are not the campaign's messages
        copies = [m for m in stack.smtp.snapshot() if m.to == "inbox-monitor@seeds.example"]
        assert len(copies) == round_ and copies[-1].message["X-Campaigns-Seed"] == "true"
        assert copies[-1].message["X-Campaign-Id"] == cid
        assert stack.sms.counts({"+27820000001"})["+27820000001"] == round_
        assert len(await ledger(stack, cid)) == 60
    assert set(received_emails(stack, audience).values()) == {2}


async def test_a_holdout_measures_lift_from_conversion_events(make_stack: StackFactory) -> None:
    """10% held out of 2,000 (5,000 at the issue's size: the rule is the same); conversions arrive
    through POST /events for a fifth of the messaged and a tenth of the held-out recipients."""
    stack = await make_stack(batch_size=500)
    audience = await make_audience(stack.engine, stack.tenant, 2_000)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None, holdoutPercent=10, conversionEvent="purchase")
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED")
    held = [c["id"] for c in audience.customers if in_holdout(cid, c["id"], 10)]
    messaged = [c["id"] for c in audience.customers if not in_holdout(cid, c["id"], 10)]
    assert sum(received_emails(stack, audience).values()) == len(messaged)  # nobody held out got one
    buyers = messaged[::5] + held[::10]
    now = datetime.now(UTC)
    events = [
        {
            "id": f"order-{i}",
            "type": "purchase",
            "tenantId": stack.tenant,
            "customerId": who,
            "occurredAt": now.isoformat(),
        }
        for i, who in enumerate(buyers)
    ]
    for start in range(0, len(events), 1_000):
        r = await stack.call("POST", "/events/batch", json={"events": events[start : start + 1_000]})
        assert r.status_code == 202, r.text
    stats = (await stack.call("GET", f"/campaigns/{cid}/stats")).json()
    h = stats["holdout"]
    assert (h["messaged"], h["messagedConverted"]) == (len(messaged), len(messaged[::5]))
    assert (h["holdout"], h["holdoutConverted"]) == (len(held), len(held[::10]))
    assert abs(h["messagedRate"] - 0.2) < 0.01 and abs(h["holdoutRate"] - 0.1) < 0.03
    low, high = h["differenceInterval"]
    assert low < h["difference"] < high and h["lift"] == h["difference"] / h["holdoutRate"]
    assert stats["convertedCount"] == len(messaged[::5])  # the holdout's are not the campaign's


async def test_an_operator_picks_the_winner_early(make_stack: StackFactory) -> None:
    stack = await make_stack(batch_size=100)
    audience = await make_audience(stack.engine, stack.tenant, 200)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    ab = {
        "variants": [{"key": "A", "subject": "Plain"}, {"key": "B", "subject": "Bold"}],
        "testPercent": 20,
        "durationHours": 24,
    }
    cid = await create_campaign(stack, audience, email_t, None, abTest=ab)
    r = await stack.call("POST", f"/campaigns/{cid}/winner", json={"variant": "B"})
    assert r.status_code == 409, r.text  # DRAFT: no test waits for its winner yet
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    test = ABTest.model_validate(ab)
    in_slice = sum(1 for c in audience.customers if test.assign(cid, c["id"], None) is not None)
    for _ in range(300):
        if sum(received_emails(stack, audience).values()) >= in_slice:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    assert sum(received_emails(stack, audience).values()) == in_slice  # the rest waits 24 h
    assert (await stack.call("POST", f"/campaigns/{cid}/winner", json={"variant": "E"})).status_code == 422
    r = await stack.call("POST", f"/campaigns/{cid}/winner", json={"variant": "B"})
    assert r.status_code == 200, r.text
    await wait_for(stack, cid, "COMPLETED")
    view = (await stack.call("GET", f"/campaigns/{cid}/experiment")).json()
    assert view["winner"] == "B" and view["decision"]["byOperator"] is True
    subjects = Counter(str(m.message["Subject"]) for m in stack.smtp.snapshot() if m.to in audience.emails())
    assert (
        subjects["Bold"]
        == 200 - in_slice + Counter(test.assign(cid, c["id"], None) for c in audience.customers)["B"]
    )
    assert sum(subjects.values()) == 200
    assert (await stack.call("POST", f"/campaigns/{cid}/winner", json={"variant": "A"})).status_code == 409
