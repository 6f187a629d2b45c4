"""Follow-ups from the ledger (README "Honest engagement"): POST /campaigns/:id/follow-up builds a
DRAFT campaign whose audience is the source's recipients with an outcome (opens and clicks of people
only), minus those whose consent or suppression changed since; executed, it reaches exactly them.

The source: 30 recipients emailed an hour ago; a third (0..9) opened in their mail client, 10..14
only had Gmail's image proxy fetch the pixel (machine opens: still "not opened"), 20 unsubscribed
since through the one-click link and 21's address went on the suppression list.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from tests.conftest import Stack, StackFactory
from tests.factories import make_templates
from tests.helpers import wait_for
from tests.test_engagement_stack import GMAIL_PROXY, MAIL_CLIENT, PERSON, client_at
from tests.test_stats import Ledger, build_ledger


def _address(stack: Stack, i: int) -> str:
    """Customer i's email in build_ledger."""
    return f"member{i}@{stack.tenant.replace('_', '-')}.example.com"


async def _source(stack: Stack) -> Ledger:
    """The source campaign of the module docstring, its opens through the real pixel."""
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    ledger = await build_ledger(stack, targets=30, email_sent=30, sms_sent=0, sent_at=lambda i: hour_ago)
    async with client_at(stack, PERSON) as client:
        for i in range(15):
            agent = MAIL_CLIENT if i < 10 else GMAIL_PROXY
            r = await client.get(ledger.links(i, "o")[0], headers={"User-Agent": agent})
            assert r.status_code == 200
    await ledger.unsubscribe(20)
    suppress = {"tenantId": stack.tenant, "channel": "EMAIL", "address": _address(stack, 21)}
    r = await stack.call("POST", "/suppressions", json=suppress)
    assert r.status_code == 201, r.text
    return ledger


async def _refusals(stack: Stack, source: str, body: dict[str, Any]) -> None:
    """Another tenant sees no such campaign; a reason belongs to SKIPPED only; a typo is a 422; a
    template the tenant lacks is refused by the create path itself, and leaves no segment behind."""
    path = f"/campaigns/{source}/follow-up"
    assert (await stack.call("POST", path, tenant=stack.other_tenant, json=body)).status_code == 404
    r = await stack.call("POST", path, json={**body, "reason": "QUIET_HOURS"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert (await stack.call("POST", path, json={**body, "audiense": "X"})).status_code == 422
    r = await stack.call("POST", path, json={**body, "emailTemplateId": "template_nope"})
    assert r.status_code == 422, r.text
    async with stack.engine.connect() as conn:
        q = text("SELECT count(*) FROM segments WHERE tenant_id = :t")
        assert (await conn.execute(q, {"t": stack.tenant})).scalar_one() == 0


async def test_a_follow_up_to_not_opened_reaches_exactly_the_others(make_stack: StackFactory) -> None:
    stack = await make_stack()
    ledger = await _source(stack)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    body = {
        "audience": "NOT_OPENED",
        "name": "Second chance",
        "channels": ["EMAIL"],
        "emailTemplateId": email_t,
    }
    await _refusals(stack, ledger.campaign_id, body)

    r = await stack.call("POST", f"/campaigns/{ledger.campaign_id}/follow-up", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["status"], created["type"]) == ("DRAFT", "ONE_TIME")
    assert created["sourceCampaignId"] == ledger.campaign_id
    info = created["followUp"]
    assert (info["audience"], info["matched"], info["excluded"], info["recipients"]) == (
        "NOT_OPENED",
        20,
        2,
        18,
    )
    assert created["segmentId"] == info["segmentId"]
    linked = (await stack.call("GET", f"/campaigns/{created['id']}/follow-up")).json()
    assert (linked["sourceCampaignId"], linked["followUp"]["recipients"]) == (ledger.campaign_id, 18)

    # Executed, it reaches exactly the others: not 0..9 (human opens), 20 (unsubscribed), 21 (suppressed).
    everyone = {_address(stack, i) for i in range(30)}
    expected = everyone - {_address(stack, i) for i in (*range(10), 20, 21)}
    r = await stack.call("POST", f"/campaigns/{created['id']}/execute")
    assert r.status_code == 200, r.text
    done = await wait_for(stack, created["id"], "COMPLETED")
    assert done["sentCount"] == 18
    received = stack.smtp.counts(everyone)
    assert set(received) == expected and set(received.values()) == {1}


async def test_a_follow_up_waits_for_the_source_to_complete(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    ledger = await build_ledger(
        stack, targets=3, email_sent=3, sms_sent=0, sent_at=lambda i: datetime.now(UTC)
    )
    async with stack.engine.begin() as conn:
        await conn.execute(
            text("UPDATE campaigns SET status = 'ACTIVE', started_at = :at WHERE id = :c"),
            {"c": ledger.campaign_id, "at": datetime.now(UTC) - timedelta(hours=2)},
        )
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    body = {"audience": "NOT_CLICKED", "name": "Nudge", "channels": ["EMAIL"], "emailTemplateId": email_t}
    r = await stack.call("POST", f"/campaigns/{ledger.campaign_id}/follow-up", json=body)
    assert r.status_code == 409 and "COMPLETED" in r.json()["detail"]
    # The tenant's setting allows one an hour after the start, for campaigns that run long.
    policy = (await stack.call("GET", f"/tenants/{stack.tenant}/policy")).json()
    policy["engagement"] = {"followUpAfterHours": 1}
    assert (await stack.call("PUT", f"/tenants/{stack.tenant}/policy", json=policy)).status_code == 200
    r = await stack.call("POST", f"/campaigns/{ledger.campaign_id}/follow-up", json=body)
    assert r.status_code == 201, r.text
    assert (r.json()["followUp"]["recipients"], r.json()["sourceCampaignId"]) == (3, ledger.campaign_id)
