"""Approvals (README "Approvals"): with the tenant's policy requiring them, a campaign needs an
approve from another user before schedule or execute; an edit withdraws it; the approval shows on
the campaign and in the Temporal memo."""

from datetime import UTC, datetime, timedelta

from api.auth import issue_token
from tests.conftest import StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, received_emails, wait_for


async def test_approvals_gate_schedule_and_execute(make_stack: StackFactory) -> None:
    stack = await make_stack()
    r = await stack.call("PUT", f"/tenants/{stack.tenant}/policy", json={"requireApproval": True})
    assert r.status_code == 200, r.text
    audience = await make_audience(stack.engine, stack.tenant, 3)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None)
    reviewer = {"Authorization": f"Bearer {issue_token(stack.settings, 'user_reviewer', [stack.tenant])}"}

    r = await stack.call("POST", f"/campaigns/{cid}/approve")  # the creator
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
    when = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = await stack.call("POST", f"/campaigns/{cid}/schedule", json={"scheduledAt": when})
    assert r.status_code == 409, r.text
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 409
    assert (await stack.call("GET", f"/campaigns/{cid}")).json()["status"] == "DRAFT"  # nothing changed

    r = await stack.api.post(f"/campaigns/{cid}/approve", headers=reviewer)
    assert r.status_code == 200, r.text
    assert r.json()["approvedBy"] == "user_reviewer" and r.json()["approvedAt"]
    body = (await stack.call("GET", f"/campaigns/{cid}")).json()
    assert body["approvedBy"] == "user_reviewer"
    memo = await (await stack.client.get_workflow_handle(f"campaign-{cid}").describe()).memo()
    assert memo["approvedBy"] == "user_reviewer"

    # An edit withdraws the approval: execute is refused again until someone approves anew.
    assert (
        await stack.call("PATCH", f"/campaigns/{cid}", json={"name": "Spring newsletter v2"})
    ).status_code == 200
    body = (await stack.call("GET", f"/campaigns/{cid}")).json()
    assert body["approvedBy"] is None and body["approvedAt"] is None
    memo = await (await stack.client.get_workflow_handle(f"campaign-{cid}").describe()).memo()
    assert memo.get("approvedBy") is None  # a None value removes the key
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 409

    assert (await stack.api.post(f"/campaigns/{cid}/approve", headers=reviewer)).status_code == 200
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED")
    assert set(received_emails(stack, audience).values()) == {1}
    # Once sending started there is nothing left to approve.
    assert (await stack.api.post(f"/campaigns/{cid}/approve", headers=reviewer)).status_code == 409
