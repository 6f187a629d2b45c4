"""Issue 3 acceptance on the real dev server with the SMTP sink: pause, resume, cancel, signals, races."""

import asyncio
from collections import Counter
from typing import Any

from tests.conftest import Stack, StackFactory
from tests.factories import Audience, make_audience, make_templates
from tests.helpers import create_campaign, ledger, received_emails, wait_for

N = 5000


async def started_campaign(
    make_stack: StackFactory, n: int = N, **overrides: Any
) -> tuple[Stack, str, Audience]:
    stack = await make_stack(send_concurrency=8, **overrides)
    audience = await make_audience(stack.engine, stack.tenant, n)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None)
    r = await stack.call("POST", f"/campaigns/{cid}/execute")
    assert r.status_code == 200, r.text
    return stack, cid, audience


async def wait_sent(stack: Stack, audience: Audience, at_least: int) -> None:
    for _ in range(600):
        if sum(received_emails(stack, audience).values()) >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("sending did not progress")


def sent(stack: Stack, audience: Audience) -> int:
    counts = received_emails(stack, audience)
    assert set(counts.values()) <= {1}, "a recipient got the email twice"
    return sum(counts.values())


async def test_pause_stops_sending_and_resume_sends_exactly_the_rest(make_stack: StackFactory) -> None:
    stack, cid, audience = await started_campaign(make_stack)
    await wait_sent(stack, audience, 300)
    r = await stack.call("POST", f"/campaigns/{cid}/pause")
    assert r.status_code == 200, r.text
    at_pause = sent(stack, audience)
    body = r.json()
    assert body["status"] == "PAUSED" and body["pausedAt"]
    assert body["sentCount"] == at_pause  # in-flight messages finished before the answer
    assert at_pause < N
    # The read model shows the pause at once.
    listed = await stack.call("GET", "/campaigns", params={"tenantId": stack.tenant, "status": "PAUSED"})
    assert [c["id"] for c in listed.json()["data"]] == [cid]

    await asyncio.sleep(2)
    assert sent(stack, audience) == at_pause, "a message was started after the pause response"

    r = await stack.call("POST", f"/campaigns/{cid}/resume")
    assert r.status_code == 200 and r.json()["status"] == "ACTIVE"
    body = await wait_for(stack, cid, "COMPLETED", timeout=180)
    assert sent(stack, audience) == N
    assert body["sentCount"] == N and body["unknownCount"] == 0
    outcomes = Counter(row["outcome"] for row in await ledger(stack, cid))
    assert outcomes == {"SENT": N}


async def test_cancel_stops_for_good(make_stack: StackFactory) -> None:
    stack, cid, audience = await started_campaign(make_stack)
    await wait_sent(stack, audience, 300)
    r = await stack.call("POST", f"/campaigns/{cid}/cancel")
    assert r.status_code == 200, r.text
    at_cancel = sent(stack, audience)
    assert r.json()["status"] == "CANCELLED" and r.json()["sentCount"] == at_cancel
    await asyncio.sleep(2)
    assert sent(stack, audience) == at_cancel
    body = await wait_for(stack, cid, "CANCELLED")
    assert body["sentCount"] == at_cancel < N
    r = await stack.call("POST", f"/campaigns/{cid}/resume")
    assert r.status_code == 409 and r.json()["currentStatus"] == "CANCELLED"


async def test_operator_signals_act_like_rest_and_illegal_ones_are_ignored(make_stack: StackFactory) -> None:
    stack, cid, audience = await started_campaign(make_stack, n=1500)
    handle = stack.client.get_workflow_handle(f"campaign-{cid}")
    await handle.signal("resume")  # illegal while ACTIVE: ignored, never crashes the workflow
    await wait_sent(stack, audience, 200)
    await handle.signal("pause")
    body = await wait_for(stack, cid, "PAUSED")
    await asyncio.sleep(1.5)  # in-flight messages of the halted page finish
    frozen = sent(stack, audience)
    await asyncio.sleep(1.5)
    assert sent(stack, audience) == frozen
    assert body["pausedAt"]
    await handle.signal("pause")  # illegal while PAUSED: ignored
    await handle.signal("resume")
    await wait_for(stack, cid, "COMPLETED", timeout=180)
    assert sent(stack, audience) == 1500
    # The read model says COMPLETED a moment before the workflow itself closes.
    for _ in range(100):
        desc = await handle.describe()
        if desc.status is not None and desc.status.name != "RUNNING":
            break
        await asyncio.sleep(0.1)
    assert desc.status is not None and desc.status.name == "COMPLETED"

    stack2, cid2, audience2 = await started_campaign(make_stack, n=1500)
    await wait_sent(stack2, audience2, 100)
    await stack2.client.get_workflow_handle(f"campaign-{cid2}").signal("cancel")
    await wait_for(stack2, cid2, "CANCELLED")
    await asyncio.sleep(1.5)
    frozen = sent(stack2, audience2)
    await asyncio.sleep(1)
    assert sent(stack2, audience2) == frozen < 1500


async def test_racing_calls_leave_one_consistent_state(make_stack: StackFactory) -> None:
    stack, cid, audience = await started_campaign(make_stack, n=1500)
    await wait_sent(stack, audience, 100)
    pause, cancel = await asyncio.gather(
        stack.call("POST", f"/campaigns/{cid}/pause"), stack.call("POST", f"/campaigns/{cid}/cancel")
    )
    assert cancel.status_code == 200, cancel.text
    assert pause.status_code in (200, 409)
    if pause.status_code == 409:
        assert pause.json()["currentStatus"] == "CANCELLED"
    body = await wait_for(stack, cid, "CANCELLED")
    frozen = sent(stack, audience)
    await asyncio.sleep(1)
    assert sent(stack, audience) == frozen == body["sentCount"]

    stack, cid, audience = await started_campaign(make_stack, n=1500)
    await wait_sent(stack, audience, 100)
    assert (await stack.call("POST", f"/campaigns/{cid}/pause")).status_code == 200
    results = await asyncio.gather(*[stack.call("POST", f"/campaigns/{cid}/resume") for _ in range(2)])
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 409], [r.text for r in results]
    assert next(r for r in results if r.status_code == 409).json()["currentStatus"] == "ACTIVE"
    await wait_for(stack, cid, "COMPLETED", timeout=180)
    assert sent(stack, audience) == 1500
