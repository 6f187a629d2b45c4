"""Fault: the worker SIGKILLed three times during one campaign (20,000 recipients at full size)."""

from pathlib import Path

from tests.conftest import StackFactory
from tests.factories import make_audience, make_templates
from tests.faults.conftest import size
from tests.faults.drive import expected_messages, in_flight, received, until_received
from tests.faults.processes import kill, start_worker
from tests.faults.reconcile import reconcile
from tests.helpers import create_campaign, wait_for

N = size(2_500, 20_000)


async def test_worker_killed_three_times_mid_campaign(make_stack: StackFactory, tmp_path: Path) -> None:
    stack = await make_stack(worker=False, batch_size=size(250, 500))
    audience = await make_audience(stack.engine, stack.tenant, N, no_phone_every=7, email_opt_out_every=9)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t)
    total = expected_messages(audience)

    workers = [start_worker(stack.settings, tmp_path / "worker-0.log")]
    at_kills: list[int] = []
    try:
        assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
        for k, share in enumerate((0.15, 0.4, 0.65), start=1):
            await until_received(stack, audience, int(total * share), worker=workers[-1], timeout=180)
            kill(workers[-1])
            at_kills.append(received(stack, audience))
            workers.append(start_worker(stack.settings, tmp_path / f"worker-{k}.log"))
        await wait_for(stack, cid, "COMPLETED", timeout=300)
    finally:
        for worker in workers:
            kill(worker)
    assert at_kills[-1] < total, "the last kill came after the campaign had finished sending"

    figures = await reconcile(
        stack,
        cid,
        audience,
        case="worker SIGKILL",
        faults=f"3 SIGKILLs of the worker (at {', '.join(f'{n:,}' for n in at_kills)} messages)",
        # Each kill may leave the waves in flight (pages x lanes x wave) without an answer.
        unknown_bound=3 * in_flight(stack.settings),
    )
    # Never re-posted: the killed workers' in-flight SMS are UNKNOWN, not sent again.
    phones = {c["phone"] for c in audience.customers if c["phone"]}
    keys = [m.idempotency_key for m in stack.sms.messages if m.to in phones]
    assert all(stack.sms.attempts[key] == 1 for key in keys), "an SMS was posted twice"
    assert figures.sent + figures.unknown >= figures.received
