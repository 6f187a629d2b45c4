"""A run's first pages send while the rest of its snapshot is taken (workflows/snapshot_steps.py):
the pages never reach past the last chunk the workflow has, only whole pages are planned until the
snapshot is whole, and a pause in the middle of it loses and doubles no one."""

from collections import Counter

from core.messages import PlanPagesInput, PlanPagesResult, SendBatchInput, SnapshotResult
from tests.conftest import Stack, StackFactory
from tests.factories import Audience, make_audience, make_templates
from tests.helpers import create_campaign, ledger, received_emails, received_sms, wait_for
from tests.history import activity_inputs, activity_results, campaign_history, completed_ids, scheduled_ids

RECIPIENTS = 600
CHUNK = 100  # six snapshot chunks
PAGE = 20


async def _sent_once(stack: Stack, audience: Audience, campaign_id: str) -> None:
    """Every member got one email and (with a phone) one SMS; the ledger says the same."""
    emails, phones = received_emails(stack, audience), received_sms(stack, audience)
    with_phone = sum(1 for c in audience.customers if c["phone"])
    assert len(emails) == RECIPIENTS and set(emails.values()) == {1}
    assert len(phones) == with_phone and set(phones.values()) == {1}
    outcomes = Counter((r["channel"], r["outcome"]) for r in await ledger(stack, campaign_id))
    assert outcomes == {
        ("EMAIL", "SENT"): RECIPIENTS,
        ("SMS", "SENT"): with_phone,
        ("SMS", "SKIPPED"): RECIPIENTS - with_phone,
    }
    campaign = (await stack.call("GET", f"/campaigns/{campaign_id}")).json()
    assert campaign["targetCount"] == RECIPIENTS


async def _campaign(stack: Stack) -> tuple[Audience, str]:
    audience = await make_audience(stack.engine, stack.tenant, RECIPIENTS, no_phone_every=5)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    return audience, await create_campaign(stack, audience, email_t, sms_t)


async def test_pages_send_while_the_snapshot_is_taken(make_stack: StackFactory) -> None:
    stack = await make_stack(snapshot_chunk_size=CHUNK, batch_size=PAGE, pages_in_flight=2)
    audience, cid = await _campaign(stack)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED", timeout=120)
    await _sent_once(stack, audience, cid)

    events = await campaign_history(stack, cid)
    chunks = activity_results(events, "snapshot_audience", SnapshotResult)
    assert len(chunks) == RECIPIENTS // CHUNK + 1 and chunks[-1].done  # the last one finds the end
    # The first page was started before the snapshot was whole.
    assert scheduled_ids(events, "send_batch")[0] < completed_ids(events, "snapshot_audience")[-1]
    # While the snapshot was taken, plans reached no further than the chunks returned, and cut
    # only whole pages; pages cover the audience once.
    plans = activity_inputs(events, "plan_pages", PlanPagesInput)
    results = activity_results(events, "plan_pages", PlanPagesResult)
    partial = [(p, r) for p, r in zip(plans, results, strict=True) if p.snapshot_upto is not None]
    assert partial, "no page was planned during the snapshot"
    cursors = {c.last_customer_id for c in chunks}
    for plan, result in partial:
        assert plan.snapshot_upto in cursors and not result.exhausted
        assert all(bound <= plan.snapshot_upto for bound in result.bounds)
    pages = activity_inputs(events, "send_batch", SendBatchInput)
    bounds = [p.upto for p in pages]
    assert len(bounds) == len(set(bounds))
    planned = [b for r in results for b in r.bounds]
    assert sorted(planned) == sorted(bounds)


async def test_a_pause_during_the_snapshot_loses_and_doubles_no_one(make_stack: StackFactory) -> None:
    stack = await make_stack(snapshot_chunk_size=CHUNK, batch_size=PAGE, pages_in_flight=2)
    audience, cid = await _campaign(stack)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    assert (await stack.call("POST", f"/campaigns/{cid}/pause")).status_code == 200
    await wait_for(stack, cid, "PAUSED")
    handle = stack.client.get_workflow_handle(f"campaign-{cid}")
    progress = await handle.query("progress")
    assert not progress["snapshot_complete"], "the snapshot was whole before the pause"
    chunks_then = len(
        activity_results(await campaign_history(stack, cid), "snapshot_audience", SnapshotResult)
    )
    assert (await stack.call("POST", f"/campaigns/{cid}/resume")).status_code == 200
    await wait_for(stack, cid, "COMPLETED", timeout=120)
    await _sent_once(stack, audience, cid)
    # Paused, the workflow took in the chunk in flight and started none; resumed, it went on.
    events = await campaign_history(stack, cid)
    assert chunks_then < len(activity_results(events, "snapshot_audience", SnapshotResult))
