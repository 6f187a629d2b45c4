"""TRIGGERED campaigns on the real dev server (issue 6): events in, exactly the right messages out."""

import asyncio
from datetime import UTC, datetime
from typing import Any

from tests.conftest import Stack, StackFactory
from tests.factories import Audience, make_audience, make_templates
from tests.helpers import ledger, received_emails, wait_for

TIER_CHANGED = "scl.member.tier.changed"


async def triggered_campaign(stack: Stack, email_t: str, **extra: Any) -> str:
    body: dict[str, Any] = {
        "tenantId": stack.tenant,
        "name": "Welcome to gold",
        "type": "TRIGGERED",
        "channels": ["EMAIL"],
        "emailTemplateId": email_t,
        "triggerEvent": TIER_CHANGED,
        "triggerConditions": {"reason": "upgrade"},
    }
    body.update(extra)
    r = await stack.call("POST", "/campaigns", json=body)
    assert r.status_code == 201, r.text
    cid = str(r.json()["id"])
    r = await stack.call("POST", f"/campaigns/{cid}/execute")
    assert r.status_code == 200 and r.json()["status"] == "ACTIVE", r.text
    return cid


def event(stack: Stack, event_id: str, customer: dict[str, Any], **data: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": data.pop("type", TIER_CHANGED),
        "tenantId": stack.tenant,
        "customerId": customer["id"],
        "occurredAt": datetime.now(UTC).isoformat(),
        "data": data,
    }


async def post(stack: Stack, body: dict[str, Any], tenant: str | None = None) -> dict[str, Any]:
    r = await stack.call("POST", "/events", tenant=tenant, json=body)
    assert r.status_code == 202, r.text
    result: dict[str, Any] = r.json()
    return result


async def until_emails(
    stack: Stack, audience: Audience, expected: dict[str, int], timeout: float = 30
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = {a: n for a, n in received_emails(stack, audience).items() if n}
        if got == expected:
            return
        assert asyncio.get_running_loop().time() < deadline, (got, expected)
        await asyncio.sleep(0.1)


async def until_processed(stack: Stack, cid: str, count: int, timeout: float = 30) -> None:
    """Until the campaign's trigger queue has processed `count` events (whatever it sent)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (stats := (await stack.call("GET", f"/campaigns/{cid}/stats")).json())["triggers"][
        "processed"
    ] < count:
        assert asyncio.get_running_loop().time() < deadline, stats["triggers"]
        await asyncio.sleep(0.1)


async def test_events_reach_exactly_the_matching_customers_once(make_stack: StackFactory) -> None:
    stack = await make_stack(trigger_poll_seconds=2.0)
    audience = await make_audience(stack.engine, stack.tenant, 8)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await triggered_campaign(stack, email_t)
    c = audience.customers

    # Another tenant's campaign on the same event type never sees our events (and vice versa).
    other = await make_audience(stack.engine, stack.other_tenant, 1)
    other_t, _ = await make_templates(stack.engine, stack.other_tenant)
    r = await stack.call(
        "POST",
        "/campaigns",
        tenant=stack.other_tenant,
        json={
            "tenantId": stack.other_tenant,
            "name": "Other tenant",
            "type": "TRIGGERED",
            "channels": ["EMAIL"],
            "emailTemplateId": other_t,
            "triggerEvent": TIER_CHANGED,
        },
    )
    other_cid = r.json()["id"]
    r = await stack.call("POST", f"/campaigns/{other_cid}/execute", tenant=stack.other_tenant)
    assert r.status_code == 200

    first = await post(stack, event(stack, "evt-1", c[0], reason="upgrade", tier="gold"))
    assert first == {
        "id": "evt-1",
        "duplicate": False,
        "triggered": 1,
        "skippedPaused": 0,
        "conversionsRecorded": 0,
    }
    await post(stack, event(stack, "evt-2", c[1], reason="upgrade"))
    # Conditions not met, another type, and a repeat of evt-1 (ignored, even for another customer).
    assert (await post(stack, event(stack, "evt-3", c[2], reason="downgrade")))["triggered"] == 0
    assert (await post(stack, event(stack, "evt-4", c[3], type="scl.member.joined", reason="upgrade")))[
        "triggered"
    ] == 0
    again = await post(stack, event(stack, "evt-1", c[4], reason="upgrade"))
    assert again["duplicate"] is True and again["triggered"] == 0
    # The other tenant's event with the same id and our customer's id: its own tenant, its own campaign.
    foreign = event(stack, "evt-1", c[5], reason="upgrade")
    foreign["tenantId"] = stack.other_tenant
    assert (await post(stack, foreign, tenant=stack.other_tenant))["triggered"] == 1
    # An event for a tenant the token does not grant is refused and stored nowhere.
    r = await stack.call("POST", "/events", json=foreign | {"tenantId": stack.other_tenant, "id": "evt-x"})
    assert r.status_code == 403

    # A second event for the same customer is a second message (at most once per event id).
    await post(stack, event(stack, "evt-5", c[0], reason="upgrade"))
    await until_emails(stack, audience, {c[0]["email"]: 2, c[1]["email"]: 1})

    # Paused: the event is counted as skipped and never sent, not even after resume.
    r = await stack.call("POST", f"/campaigns/{cid}/pause")
    assert r.status_code == 200 and r.json()["status"] == "PAUSED", r.text
    paused = await post(stack, event(stack, "evt-6", c[6], reason="upgrade"))
    assert paused["triggered"] == 0 and paused["skippedPaused"] == 1
    assert (await stack.call("POST", f"/campaigns/{cid}/resume")).status_code == 200
    await post(stack, event(stack, "evt-7", c[7], reason="upgrade"))
    await until_processed(stack, cid, 4)
    assert {a: n for a, n in received_emails(stack, audience).items() if n} == {
        c[0]["email"]: 2,
        c[1]["email"]: 1,
        c[7]["email"]: 1,
    }
    assert stack.smtp.counts({other.customers[0]["email"]}) == {}

    # The ledger holds one SENT row per (event, channel); stats count the queue.
    rows = await ledger(stack, cid)
    assert sorted((r["customerId"], r["outcome"]) for r in rows) == sorted(
        [(c[0]["id"], "SENT"), (c[0]["id"], "SENT"), (c[1]["id"], "SENT"), (c[7]["id"], "SENT")]
    )
    assert len({r["runId"] for r in rows}) == 4
    stats = (await stack.call("GET", f"/campaigns/{cid}/stats")).json()
    assert stats["triggers"] == {
        "matched": 5,
        "queued": 0,
        "processed": 4,
        "skippedWhilePaused": 1,
        "closed": 0,
    }
    assert stats["sentCount"] == 3  # distinct recipients
    assert stats["byChannel"]["EMAIL"]["sent"] == 4  # messages

    # Cancel ends it: later events match nothing.
    assert (await stack.call("POST", f"/campaigns/{cid}/cancel")).status_code == 200
    await wait_for(stack, cid, "CANCELLED")
    assert (await post(stack, event(stack, "evt-8", c[2], reason="upgrade")))["triggered"] == 0


async def test_a_burst_in_one_batch_sends_each_event_once(make_stack: StackFactory) -> None:
    stack = await make_stack(trigger_poll_seconds=2.0, batch_size=50)
    audience = await make_audience(stack.engine, stack.tenant, 120)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await triggered_campaign(stack, email_t, triggerConditions={})
    events = [event(stack, f"burst-{i}", cust) for i, cust in enumerate(audience.customers)]
    r = await stack.call("POST", "/events/batch", json={"events": events + events[:10]})
    assert r.status_code == 202, r.text
    assert r.json() == {
        "accepted": 130,
        "duplicates": 10,
        "triggered": 120,
        "skippedPaused": 0,
        "conversionsRecorded": 0,
    }
    # Done means the queue says so (every event processed), not the first moment the sinks match:
    # a second copy sent a moment later must still be seen.
    await until_processed(stack, cid, 120, timeout=60)
    triggers = (await stack.call("GET", f"/campaigns/{cid}/stats")).json()["triggers"]
    assert triggers == {"matched": 120, "queued": 0, "processed": 120, "skippedWhilePaused": 0, "closed": 0}
    rows = await ledger(stack, cid)
    assert sorted((r["customerId"], r["channel"], r["outcome"]) for r in rows) == sorted(
        (cust["id"], "EMAIL", "SENT") for cust in audience.customers
    )
    assert received_emails(stack, audience) == {cust["email"]: 1 for cust in audience.customers}
    body = await wait_for(stack, cid, "ACTIVE")
    assert body["sentCount"] == 120


async def test_triggered_fields_are_validated(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    audience = await make_audience(stack.engine, stack.tenant, 1)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    base: dict[str, Any] = {
        "tenantId": stack.tenant,
        "name": "x",
        "type": "TRIGGERED",
        "channels": ["EMAIL"],
        "emailTemplateId": email_t,
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "$.triggerEvent"),
        ({"triggerEvent": "a", "segmentId": audience.segment_id}, "$.segmentId"),
        ({"triggerEvent": "a", "schedule": {"frequency": "daily", "time": "09:00"}}, "$.schedule"),
        ({"triggerEvent": "a", "triggerConditions": {"k": {"nested": 1}}}, "triggerConditions"),
    ]
    for extra, path in cases:
        r = await stack.call("POST", "/campaigns", json=base | extra)
        assert r.status_code == 422, (extra, r.text)
        assert any(path in e["path"] for e in r.json()["errors"]), (path, r.json())
