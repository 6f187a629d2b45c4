"""A page sends for at most CAMPAIGNS_PAGE_TIME_BUDGET per attempt (activities/send/page.py): a
page slowed by a rate limit stops itself as a pause would stop it, returns incomplete, and the
workflow sends the rest of it as a new activity. Nobody gets a message twice, nobody is left out,
and nothing ends UNKNOWN: the page's activity is never timed out mid-message."""

from collections import Counter

from core.messages import ResendInput, SendBatchInput, SendBatchResult
from tests.conftest import StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import (
    auto_paused_by_refusals,
    create_campaign,
    ledger,
    received_emails,
    received_sms,
    sms_left_unknown,
    wait_for,
)
from tests.history import activity_inputs, activity_results, campaign_history, workflow_events

RECIPIENTS = 40


async def test_a_throttled_page_is_sent_in_attempts_of_its_time_budget(make_stack: StackFactory) -> None:
    # 40 recipients in pages of 10, two in flight, at 10 emails a second for the account: a page
    # takes about two seconds, and may send for 0.5 s per attempt.
    stack = await make_stack(
        rate_limits={"email": {"perSecond": 10}},
        batch_size=10,
        pages_in_flight=2,
        page_time_budget=0.5,
    )
    audience = await make_audience(stack.engine, stack.tenant, RECIPIENTS)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED", timeout=60)

    received = received_emails(stack, audience)
    assert len(received) == RECIPIENTS and set(received.values()) == {1}
    assert Counter(r["outcome"] for r in await ledger(stack, cid)) == {"SENT": RECIPIENTS}

    events = await campaign_history(stack, cid)
    pages = activity_inputs(events, "send_batch", SendBatchInput)
    results = activity_results(events, "send_batch", SendBatchResult)
    stopped = [r for r in results if not r.page_complete]
    # Pages stopped at their budget and were sent again: more attempts than the 4 pages, each
    # page's bound sent until one attempt completed it, and the completed ones count every recipient.
    assert stopped, "no page reached its time budget"
    assert len(pages) == 4 + len(stopped)
    assert len({p.upto for p in pages}) == 4
    assert sum(r.recipients for r in results if r.page_complete) == RECIPIENTS
    assert sum(r.counts.sent for r in results if r.page_complete) == RECIPIENTS
    campaign = (await stack.call("GET", f"/campaigns/{cid}")).json()
    assert campaign["sentCount"] == RECIPIENTS


async def test_a_throttled_resend_goes_on_from_the_same_rows(make_stack: StackFactory) -> None:
    # 12 SMS end UNKNOWN (the provider answers 503), then are resent at 5 SMS a second with 0.5 s
    # per attempt: the resend takes several activities, each reading the rows still UNKNOWN.
    stack = await make_stack(rate_limits={"sms": {"perSecond": 5}}, page_time_budget=0.5)
    audience, cid = await sms_left_unknown(stack, 12)

    r = await stack.call("POST", f"/campaigns/{cid}/resend-unknown")
    assert r.status_code == 202, r.text
    handle = stack.client.get_workflow_handle(r.json()["workflowId"])
    assert await handle.result() == 12

    sms = received_sms(stack, audience)
    assert set(sms) == audience.phones() and set(sms.values()) == {1}
    assert Counter(row["outcome"] for row in await ledger(stack, cid)) == {"SENT": 12}
    pages = activity_inputs(await workflow_events(handle), "resend_unknown", ResendInput)
    assert len(pages) > 1 and {p.after for p in pages} == {None}  # out of time, the same rows again


async def test_a_throttled_page_the_provider_refuses_is_auto_paused_within_an_attempt(
    make_stack: StackFactory,
) -> None:
    # One page of 40 at 10 emails a second (4 s), 0.5 s per attempt, and a provider that refuses
    # every address: the first attempt's answers reach the auto-pause rule, so the campaign stops
    # after about one attempt, not after the whole page.
    stack = await make_stack(
        rate_limits={"email": {"perSecond": 10}}, batch_size=40, pages_in_flight=1, page_time_budget=0.5
    )
    rule = {"failureRate": 0.5, "window": 10, "minMessages": 3}
    _, cid, _ = await auto_paused_by_refusals(stack, RECIPIENTS, rule)
    decided = [r for r in await ledger(stack, cid) if r["outcome"] != "PENDING"]
    assert {r["outcome"] for r in decided} == {"BOUNCED"}
    assert 3 <= len(decided) <= 20, len(decided)  # before: the whole page of 40, then the pause
