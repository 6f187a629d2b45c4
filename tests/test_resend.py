"""POST /campaigns/:id/resend-unknown: UNKNOWN deliveries are resent only when an operator asks."""

import asyncio
import dataclasses
from collections import Counter

from sqlalchemy import text
from temporalio.testing import ActivityEnvironment

from activities.deps import ActivityDeps
from activities.resend import ResendActivities
from core.messages import ResendInput
from tests.conftest import StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, ledger, received_sms, sms_left_unknown, wait_for


async def test_unknown_sms_are_resent_once_on_request(make_stack: StackFactory) -> None:
    stack = await make_stack()
    audience = await make_audience(stack.engine, stack.tenant, 20)
    _, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, None, sms_t)
    flaky = {c["phone"] for c in audience.customers[:3]}
    stack.sms.unavailable_numbers |= flaky  # the provider answers 503: the outcome is unknown
    try:
        assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
        body = await wait_for(stack, cid, "COMPLETED")
    finally:
        stack.sms.unavailable_numbers -= flaky
    assert body["unknownCount"] == 3 and body["sentCount"] == 17
    assert set(received_sms(stack, audience)) == audience.phones() - flaky

    r = await stack.call("POST", f"/campaigns/{cid}/resend-unknown")
    assert r.status_code == 202, r.text
    assert r.json()["unknownCount"] == 3
    await stack.client.get_workflow_handle(r.json()["workflowId"]).result()

    sms = received_sms(stack, audience)
    assert set(sms) == audience.phones() and set(sms.values()) == {1}
    rows = await ledger(stack, cid)
    assert Counter(row["outcome"] for row in rows) == {"SENT": 20}
    body = (await stack.call("GET", f"/campaigns/{cid}")).json()
    assert body["unknownCount"] == 0 and body["sentCount"] == 20
    # Nothing left to resend: 200 with a zero count, no workflow.
    r = await stack.call("POST", f"/campaigns/{cid}/resend-unknown")
    assert r.status_code == 200 and r.json() == {"campaignId": cid, "unknownCount": 0, "workflowId": None}


async def test_resend_is_refused_while_the_campaign_can_still_send(make_stack: StackFactory) -> None:
    stack = await make_stack()
    audience = await make_audience(stack.engine, stack.tenant, 3)
    _, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, None, sms_t)
    r = await stack.call("POST", f"/campaigns/{cid}/resend-unknown")
    assert r.status_code == 409 and r.json()["currentStatus"] == "DRAFT"
    r = await stack.call("POST", f"/campaigns/{cid}/resend-unknown", tenant=stack.other_tenant)
    assert r.status_code == 404
    await asyncio.sleep(0)


async def test_a_retried_resend_attempt_sends_what_the_dead_one_held(make_stack: StackFactory) -> None:
    """A resend attempt that died mid-page left PENDING rows (maybe sent); its retry turns them
    back into UNKNOWN and sends them with the rest of the page, so no row is left PENDING when the
    resend ends (before, they stayed PENDING until an operator's next resend)."""
    stack = await make_stack(batch_size=5)
    audience, cid = await sms_left_unknown(stack, 12)

    deps = ActivityDeps.build(stack.settings, stack.engine)
    env = ActivityEnvironment()
    resend = ResendActivities(deps).resend_unknown
    try:
        first = await env.run(resend, ResendInput(campaign_id=cid, tenant_id=stack.tenant))
        assert first.resent == 5 and not first.done
        # An attempt of the second page claimed two rows and died.
        async with stack.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE deliveries SET outcome = 'PENDING' WHERE id IN (SELECT id FROM deliveries"
                    " WHERE campaign_id = :c AND outcome = 'UNKNOWN' ORDER BY id DESC LIMIT 2)"
                ),
                {"c": cid},
            )
        env.info = dataclasses.replace(env.info, attempt=2)
        after = first.next_after
        resent = first.resent
        while True:
            page = await env.run(resend, ResendInput(campaign_id=cid, tenant_id=stack.tenant, after=after))
            resent += page.resent
            after = page.next_after
            if page.done:
                break
    finally:
        await deps.close()
    assert resent == 12
    sms = received_sms(stack, audience)
    assert set(sms) == audience.phones() and set(sms.values()) == {1}
    assert Counter(row["outcome"] for row in await ledger(stack, cid)) == {"SENT": 12}
