"""Fault: storms of 50 random lifecycle calls (pause/resume/cancel, some racing) during a send.

Every call is answered 200 with the state reached or 409 naming the current status, never 5xx.
A pause/resume storm ends COMPLETED with everyone reached exactly once; a storm with a cancel in
it ends CANCELLED: nothing is sent after the cancel's answer, everyone reached has exactly one
outcome, and the rest are never reached.

A storm only proves something if it hit a campaign still sending: if the send finished first,
fifty 409s would pass every other check. So each answer carries the number of messages the sinks
held at the moment it came back, and the tests require accepted calls, a pause accepted before the
last message arrived, and (for the cancel) exactly the count held when the cancel answered.
"""

import asyncio
import random
from typing import Any

from tests.conftest import Stack, StackFactory
from tests.factories import Audience, make_audience, make_templates
from tests.faults.conftest import size
from tests.faults.drive import expected_messages, received
from tests.faults.reconcile import reconcile
from tests.helpers import create_campaign, wait_for

N = size(2_000, 10_000)
CALLS = 50
CALL_TIMEOUT = 30  # a lifecycle call answers in well under a second
REACHED = {"pause": "PAUSED", "resume": "ACTIVE", "cancel": "CANCELLED"}
# (call, HTTP status, campaign status in the answer, messages the sinks held when it answered)
Answer = tuple[str, int, str, int]


async def storm(stack: Stack, cid: str, audience: Audience, plan: list[str], seed: int) -> list[Answer]:
    """The planned calls, spaced 0-150 ms; every 7th call races two more."""
    rng = random.Random(seed)
    answers: list[Answer] = []

    async def call(op: str, racing: set[str]) -> None:
        deadline = asyncio.timeout(CALL_TIMEOUT)
        try:
            async with deadline:
                r = await stack.call("POST", f"/campaigns/{cid}/{op}")
        except Exception:
            if not deadline.expired():
                raise
            progress = await stack.client.get_workflow_handle(f"campaign-{cid}").query("progress")
            raise AssertionError(
                f"{op} got no answer in {CALL_TIMEOUT} s (after {answers[-3:]}); the workflow: {progress}"
            ) from None
        held = received(stack, audience)  # at the answer, before anything else can run
        body: dict[str, Any] = r.json()
        assert r.status_code in (200, 409), (op, r.status_code, body)
        status = body["status"] if r.status_code == 200 else body["currentStatus"]
        if r.status_code == 200:
            # The answer shows the state reached: its own, or a racing call's that came after.
            assert status in {REACHED[o] for o in racing}, (op, racing, body)
        answers.append((op, r.status_code, status, held))

    made = 0
    while made < len(plan):
        burst = plan[made : made + (3 if made % 7 == 6 else 1)]
        await asyncio.gather(*(call(op, set(burst)) for op in burst))
        made += len(burst)
        await asyncio.sleep(rng.uniform(0, 0.15))
    assert len(answers) == CALLS
    return answers


async def launch(stack: Stack, n: int) -> tuple[str, Audience]:
    audience = await make_audience(stack.engine, stack.tenant, n, no_phone_every=7, email_opt_out_every=9)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    return cid, audience


def accepted_pause_while_sending(answers: list[Answer], total: int) -> None:
    """The storm hit a campaign still sending: calls were accepted, and the first accepted pause
    answered before the sinks held the last message (otherwise it paused nothing)."""
    accepted = [a for a in answers if a[1] == 200]
    assert accepted, f"every call was refused: {answers[:5]}"
    pauses = [held for op, code, _, held in answers if op == "pause" and code == 200]
    assert pauses, f"no pause was accepted: {answers}"
    assert pauses[0] < total, f"the first accepted pause came after all {total} messages"


async def test_pause_resume_storm_still_reaches_everyone_once(make_stack: StackFactory) -> None:
    stack = await make_stack(batch_size=200)
    cid, audience = await launch(stack, N)
    rng = random.Random(8)
    plan = [rng.choice(["pause", "resume"]) for _ in range(CALLS)]
    answers = await storm(stack, cid, audience, plan, seed=8)
    accepted_pause_while_sending(answers, expected_messages(audience))
    if (await stack.call("GET", f"/campaigns/{cid}")).json()["status"] == "PAUSED":
        assert (await stack.call("POST", f"/campaigns/{cid}/resume")).status_code == 200
    await wait_for(stack, cid, "COMPLETED", timeout=240)
    accepted = sum(1 for _, code, _, _ in answers if code == 200)
    await reconcile(
        stack,
        cid,
        audience,
        case="lifecycle storm (pause/resume)",
        faults=f"{CALLS} random pause/resume calls ({accepted} accepted, {CALLS - accepted} refused)",
        unknown_bound=0,  # a pause lets the messages in flight finish: none is left unanswered
        expect_unknown=set(),
    )


async def test_storm_with_a_cancel_stops_for_good(make_stack: StackFactory) -> None:
    stack = await make_stack(batch_size=200)
    cid, audience = await launch(stack, size(4_000, 10_000))
    rng = random.Random(88)
    plan = [rng.choice(["pause", "resume"]) for _ in range(CALLS)]
    plan[rng.randint(10, 30)] = "cancel"
    answers = await storm(stack, cid, audience, plan, seed=88)
    accepted_pause_while_sending(answers, expected_messages(audience))

    done = [i for i, (op, code, _, _) in enumerate(answers) if op == "cancel" and code == 200]
    assert done, f"the cancel was refused: {[a for a in answers if a[0] == 'cancel']}"
    assert all(status == "CANCELLED" for _, _, status, _ in answers[done[0] + 1 :])
    at_cancel = answers[done[0]][3]
    # The workflow closes once its pages have halted; only then can nothing more be on its way.
    await stack.client.get_workflow_handle(f"campaign-{cid}").result()
    await wait_for(stack, cid, "CANCELLED")
    assert received(stack, audience) == at_cancel, "a message was sent after the cancel's answer"
    accepted = sum(1 for _, code, _, _ in answers if code == 200)
    figures = await reconcile(
        stack,
        cid,
        audience,
        case="lifecycle storm (pause/resume/cancel)",
        faults=f"{CALLS} random pause/resume calls and a cancel ({accepted} accepted,"
        f" {CALLS - accepted} refused)",
        unknown_bound=0,
        expect_unknown=set(),
        unreached_ok=True,
    )
    assert figures.unreached > 0, "the campaign had reached everyone before the cancel"
    assert figures.received == at_cancel
