"""POST /campaigns/:id/resend-unknown: UNKNOWN deliveries are resent only when an operator asks."""

import asyncio
from collections import Counter

from tests.conftest import StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, ledger, received_sms, wait_for


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
