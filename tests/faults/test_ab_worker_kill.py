"""Fault: an A/B test's winner send (the held remainder's sweep) with the worker SIGKILLed in its
middle: nobody gets two messages, everyone gets the winner or its test-slice variant, and the
UNKNOWN rows stay within one kill's bound (README "A/B tests")."""

from collections import Counter
from pathlib import Path

from core.experiments import ABTest
from tests.conftest import StackFactory
from tests.factories import make_audience, make_templates
from tests.faults.conftest import size
from tests.faults.drive import unanswered_bound, until_received
from tests.faults.processes import kill, start_worker
from tests.helpers import create_campaign, ledger, wait_for

N = size(1_000, 20_000)
AB = {
    "variants": [{"key": "A", "subject": "Offer A"}, {"key": "B", "subject": "Offer B"}],
    "testPercent": 10,
    "metric": "CLICK_RATE",
    "durationHours": 0.001,  # 3.6 s: the winner send starts right after the test slice
}


async def test_a_worker_kill_during_the_winner_send_doubles_nobody(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = await make_stack(worker=False, batch_size=size(250, 500))
    audience = await make_audience(stack.engine, stack.tenant, N)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None, abTest=AB)
    test = ABTest.model_validate(AB)
    in_slice = sum(1 for c in audience.customers if test.assign(cid, c["id"], None) is not None)
    workers = [start_worker(stack.settings, tmp_path / "worker-0.log")]
    try:
        assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
        # Halfway through the remainder (the winner send), kill the worker; a new one goes on.
        await until_received(stack, audience, in_slice + (N - in_slice) // 2, worker=workers[-1], timeout=180)
        kill(workers[-1])
        workers.append(start_worker(stack.settings, tmp_path / "worker-1.log"))
        await wait_for(stack, cid, "COMPLETED", timeout=300)
    finally:
        for worker in workers:
            kill(worker)
    received = stack.smtp.counts(audience.emails())
    assert max(received.values()) == 1, "someone got two messages"
    rows = await ledger(stack, cid)
    outcomes = Counter(r["outcome"] for r in rows)
    assert len(rows) == N and outcomes["SENT"] + outcomes["UNKNOWN"] == N
    assert outcomes["UNKNOWN"] <= unanswered_bound(stack.settings)["EMAIL"]
    assert sum(received.values()) >= outcomes["SENT"]
    view = (await stack.call("GET", f"/campaigns/{cid}/experiment")).json()
    assert view["winner"] in ("A", "B")
    assert sum(v["sent"] for v in view["byVariant"]) == outcomes["SENT"]
