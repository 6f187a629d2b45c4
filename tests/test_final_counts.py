"""A cancelled campaign's counts are the ledger's (README "Delivery guarantees (the ledger)",
"Stats"): nothing the cancel cut short is missing from `skippedCount`, `unknownCount` or `failedCount`."""

import asyncio
from collections import Counter

from tests.conftest import StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, ledger, received_emails, wait_for


async def test_cancel_mid_send_counts_what_the_ledger_holds(make_stack: StackFactory) -> None:
    stack = await make_stack(batch_size=200, send_concurrency=4, pages_in_flight=1)
    # Every 5th customer opted out of email: the snapshot records those skips up front, also for
    # the pages the cancel will keep from ever being sent.
    audience = await make_audience(stack.engine, stack.tenant, 3000, email_opt_out_every=5)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    for _ in range(600):
        if sum(received_emails(stack, audience).values()) >= 200:
            break
        await asyncio.sleep(0.05)
    assert (await stack.call("POST", f"/campaigns/{cid}/cancel")).status_code == 200
    await wait_for(stack, cid, "CANCELLED")
    handle = stack.client.get_workflow_handle(f"campaign-{cid}")
    await handle.result()  # the workflow has closed: its final sync is in

    rows = await ledger(stack, cid)
    outcomes = Counter(row["outcome"] for row in rows)
    assert outcomes["PENDING"] == 0
    body = (await stack.call("GET", f"/campaigns/{cid}")).json()
    stats = (await stack.call("GET", f"/campaigns/{cid}/stats")).json()
    assert outcomes["SKIPPED"] == 600, outcomes  # all of them, sent pages or not
    for source in (body, stats):
        assert source["skippedCount"] == outcomes["SKIPPED"]
        assert source["unknownCount"] == outcomes["UNKNOWN"]
        assert source["sentCount"] == outcomes["SENT"] < 2400
