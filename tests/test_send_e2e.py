"""Issue 2 acceptance: a ONE_TIME campaign on EMAIL and SMS, end to end on real parts."""

import asyncio
from collections import Counter

from tests.conftest import StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, ledger, received_emails, received_sms, wait_for


async def test_thousand_recipients_each_get_exactly_one_message_per_channel(make_stack: StackFactory) -> None:
    stack = await make_stack()
    audience = await make_audience(stack.engine, stack.tenant, 1000, no_phone_every=7, email_opt_out_every=9)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t)

    r = await stack.call("POST", f"/campaigns/{cid}/execute")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ACTIVE" and r.json()["targetCount"] == 1000
    body = await wait_for(stack, cid, "COMPLETED")

    emails, sms = received_emails(stack, audience), received_sms(stack, audience)
    assert set(emails) == audience.emails() and set(emails.values()) == {1}
    assert set(sms) == audience.phones() and set(sms.values()) == {1}
    # Personalised: each email greets its own recipient.
    by_email = {c["email"]: c for c in audience.customers}
    for m in stack.smtp.snapshot():
        if m.to in by_email:
            assert m.message["Subject"] == f"Hello {by_email[m.to]['first_name']}"
            assert f"tier {by_email[m.to]['attributes']['tier']}" in m.part("plain")
    by_phone = {c["phone"]: c for c in audience.customers if c["phone"]}
    for s in stack.sms.messages:
        if s.to in by_phone:
            assert s.body.startswith(f"Hi {by_phone[s.to]['first_name']},")

    # Counts equal what the sinks received; nothing unaccounted for. The expected figures follow
    # from the audience alone: every 9th (i % 9 == 1) opted out of email, every 7th (i % 7 == 0)
    # has no phone, and the 16 who are both are reached on neither channel.
    assert (len(emails), len(sms)) == (889, 857)
    recipients_reached = {c["id"] for c in audience.customers if c["email"] in emails or c["phone"] in sms}
    assert len(recipients_reached) == 984
    assert body["targetCount"] == 1000
    assert body["sentCount"] == 984
    rows = await ledger(stack, cid)
    outcomes = Counter((row["channel"], row["outcome"]) for row in rows)
    assert outcomes[("EMAIL", "SENT")] == 889
    assert outcomes[("SMS", "SENT")] == 857
    skipped = [row for row in rows if row["outcome"] == "SKIPPED"]
    assert Counter(row["reason"] for row in skipped) == {"NO_CONSENT": 111, "NO_ADDRESS": 143}
    assert len(rows) == 2000  # targets x channels = sent + skipped (+ failed/bounced/unknown = 0)
    assert body["skippedCount"] == len(skipped) and body["unknownCount"] == 0


async def test_history_stays_bounded_through_continue_as_new(make_stack: StackFactory) -> None:
    """Tiny pages and a low continue-as-new threshold: a 1,000,000-recipient campaign takes this
    same path (one run per `batches_per_run` pages), so its history never grows past a bound."""
    stack = await make_stack(batch_size=10, batches_per_run=3, snapshot_chunk_size=100)
    audience = await make_audience(stack.engine, stack.tenant, 250, no_phone_every=3)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t)
    handle = stack.client.get_workflow_handle(f"campaign-{cid}")
    first_run = (await handle.describe()).run_id
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    # Pause and resume across runs: state (cursor, counts, epoch) must survive continue-as-new. So
    # the pause comes once the workflow has continued as new at least once, and must be accepted.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while (await handle.describe()).run_id == first_run:
        assert loop.time() < deadline, "the workflow never continued as new"
        await asyncio.sleep(0.02)
    r = await stack.call("POST", f"/campaigns/{cid}/pause")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "PAUSED" and r.json()["sentCount"] < 250, r.json()
    assert (await stack.call("POST", f"/campaigns/{cid}/resume")).status_code == 200
    body = await wait_for(stack, cid, "COMPLETED", timeout=180)

    emails, sms = received_emails(stack, audience), received_sms(stack, audience)
    assert set(emails) == audience.emails() and set(emails.values()) == {1}
    assert set(sms) == audience.phones() and set(sms.values()) == {1}
    assert body["targetCount"] == 250 and body["sentCount"] == 250
    desc = await handle.describe()
    assert desc.run_id != first_run, "expected the workflow to have continued as new"
    progress = await handle.query("progress")
    assert progress["processed"] == 250
    history = await handle.fetch_history()
    assert len(history.events) < 120  # the last run only; 25 pages in one run would need ~300


async def test_search_attributes_follow_the_status(make_stack: StackFactory) -> None:
    stack = await make_stack()
    audience = await make_audience(stack.engine, stack.tenant, 5)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None, clubId="club_9")
    query = f"TenantId = '{stack.tenant}' AND ClubId = 'club_9' AND CampaignType = 'ONE_TIME'"

    async def listed(status: str) -> list[str]:
        ids = []
        async for wf in stack.client.list_workflows(f"{query} AND CampaignStatus = '{status}'"):
            ids.append(wf.id)
        return ids

    for _ in range(50):
        if await listed("DRAFT") == [f"campaign-{cid}"]:
            break
        await asyncio.sleep(0.2)
    assert await listed("DRAFT") == [f"campaign-{cid}"]
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED")
    for _ in range(50):
        if await listed("COMPLETED") == [f"campaign-{cid}"]:
            break
        await asyncio.sleep(0.2)
    assert await listed("COMPLETED") == [f"campaign-{cid}"]
    assert await listed("DRAFT") == []
