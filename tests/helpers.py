"""Small helpers the end-to-end tests share."""

import asyncio
from collections import Counter
from typing import Any

from tests.conftest import FINAL_STATUSES, Stack
from tests.factories import Audience, make_audience, make_templates


async def wait_for(stack: Stack, campaign_id: str, *statuses: str, timeout: float = 120) -> dict[str, Any]:
    """Poll GET /campaigns/:id until its status is one of `statuses`.

    A final status (COMPLETED, CANCELLED) also waits for the campaign's workflow to close: the read
    model shows the status before the workflow's last steps (the ledger recount, the last sync), and
    a test that stopped its worker right then would leave the workflow running.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        r = await stack.call("GET", f"/campaigns/{campaign_id}")
        body: dict[str, Any] = r.json()
        if body.get("status") in statuses:
            if body["status"] in FINAL_STATUSES:
                handle = stack.client.get_workflow_handle(f"campaign-{campaign_id}")
                await asyncio.wait_for(handle.result(), max(deadline - loop.time(), 1.0))
            return body
        assert loop.time() < deadline, f"campaign stuck: {body}"
        await asyncio.sleep(0.1)


async def create_campaign(
    stack: Stack, audience: Audience, email_t: str | None, sms_t: str | None, **extra: Any
) -> str:
    channels = [c for c, t in (("EMAIL", email_t), ("SMS", sms_t)) if t]
    body: dict[str, Any] = {
        "tenantId": stack.tenant,
        "name": "Spring newsletter",
        "type": "ONE_TIME",
        "segmentId": audience.segment_id,
        "channels": channels,
    }
    if email_t:
        body["emailTemplateId"] = email_t
    if sms_t:
        body["smsTemplateId"] = sms_t
    body.update(extra)
    r = await stack.call("POST", "/campaigns", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def create_triggered_campaign(stack: Stack, email_t: str | None, sms_t: str | None = None) -> str:
    """A TRIGGERED campaign on `tier.changed` (no segment: each event names its customer)."""
    channels = [c for c, t in (("EMAIL", email_t), ("SMS", sms_t)) if t]
    body: dict[str, Any] = {
        "tenantId": stack.tenant,
        "name": "On upgrade",
        "type": "TRIGGERED",
        "channels": channels,
        "triggerEvent": "tier.changed",
    }
    if email_t:
        body["emailTemplateId"] = email_t
    if sms_t:
        body["smsTemplateId"] = sms_t
    r = await stack.call("POST", "/campaigns", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def received_emails(stack: Stack, audience: Audience) -> Counter[str]:
    """Emails the SMTP sink received per address of this audience (sinks are session-wide)."""
    return stack.smtp.counts({c["email"] for c in audience.customers if c["email"]})


def received_sms(stack: Stack, audience: Audience) -> Counter[str]:
    return stack.sms.counts({c["phone"] for c in audience.customers if c["phone"]})


def received_once(stack: Stack, audience: Audience) -> tuple[Counter[str], Counter[str]]:
    """What the sinks received for this audience (emails, SMS per address), after checking that no
    message arrived twice and no SMS was posted twice (a crash must not make the provider see one
    again, even under the same idempotency key). Some SMS must have been posted."""
    emails, sms = received_emails(stack, audience), received_sms(stack, audience)
    assert set(emails.values()) <= {1}, "an email was sent twice"
    assert set(sms.values()) <= {1}, "an SMS was sent twice"
    # Posts of this audience's messages only: the sink is shared with earlier tests.
    phones = {c["phone"] for c in audience.customers if c["phone"]}
    keys = [m.idempotency_key for m in stack.sms.messages if m.to in phones]
    assert keys and all(stack.sms.attempts[k] == 1 for k in keys), "an SMS was re-posted"
    return emails, sms


async def ledger(stack: Stack, campaign_id: str, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    skip = 0
    while True:
        r = await stack.call(
            "GET", f"/campaigns/{campaign_id}/recipients", params={**params, "skip": skip, "take": 1000}
        )
        assert r.status_code == 200, r.text
        page = r.json()
        rows.extend(page["data"])
        skip += 1000
        if skip >= page["meta"]["total"]:
            return rows


async def sms_left_unknown(stack: Stack, recipients: int) -> tuple[Audience, str]:
    """A COMPLETED SMS campaign whose every SMS ended UNKNOWN (the provider answered 503 to all of
    them, so none reached the sink): its audience and id, ready for a resend."""
    audience = await make_audience(stack.engine, stack.tenant, recipients)
    _, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, None, sms_t)
    stack.sms.unavailable_numbers |= audience.phones()
    try:
        assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
        assert (await wait_for(stack, cid, "COMPLETED", timeout=60))["unknownCount"] == recipients
    finally:
        stack.sms.unavailable_numbers -= audience.phones()
    assert received_sms(stack, audience) == Counter()
    return audience, cid


async def put_policy(stack: Stack, body: dict[str, Any]) -> None:
    """Replace the tenant's sending policy (PUT /tenants/:id/policy)."""
    r = await stack.call("PUT", f"/tenants/{stack.tenant}/policy", json=body)
    assert r.status_code == 200, r.text


async def auto_paused_by_refusals(
    stack: Stack, recipients: int, rule: dict[str, Any]
) -> tuple[Audience, str, dict[str, Any]]:
    """An EMAIL campaign whose every address the provider refuses (550), executed under the
    auto-pause `rule` and waited for until it paused itself: its audience, id and final body."""
    await put_policy(stack, {"autoPause": rule})
    audience = await make_audience(stack.engine, stack.tenant, recipients)
    for customer in audience.customers:
        stack.smtp.refuse[customer["email"]] = (550, "5.1.1 no such user")
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    body = await wait_for(stack, cid, "PAUSED", timeout=60)
    assert body["lastError"].startswith("auto-paused:"), body
    return audience, cid, body
