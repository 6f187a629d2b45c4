"""Fault: the worker SIGKILLed three times during one campaign (20,000 recipients at full size).

Each kill may leave at most two messages per provider slot without an answer (docs/architecture.md
"The crash window"): the UNKNOWN rows are attributed to the kill they follow (by their claim time)
and checked per kill and per channel. With an idempotent SMS provider the in-flight SMS are posted
again under their key: no SMS ends UNKNOWN, and the provider still holds each one once.
"""

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.faults.conftest import size
from tests.faults.drive import expected_messages, received, unanswered_bound, until_received
from tests.faults.processes import kill, start_worker
from tests.faults.reconcile import reconcile
from tests.helpers import create_campaign, wait_for

N = size(2_500, 20_000)


async def unknown_per_kill(stack: Stack, campaign_id: str, kills: list[datetime]) -> list[Counter[str]]:
    """UNKNOWN rows by channel, each counted for the first kill after its claim."""
    async with stack.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT channel, claimed_at FROM deliveries"
                    " WHERE campaign_id = :c AND outcome = 'UNKNOWN'"
                ),
                {"c": campaign_id},
            )
        ).all()
    per_kill: list[Counter[str]] = [Counter() for _ in kills]
    for channel, claimed_at in rows:
        k = next((i for i, at in enumerate(kills) if claimed_at <= at), len(kills) - 1)
        per_kill[k][channel] += 1
    return per_kill


@pytest.mark.parametrize("sms_idempotent", [False, True], ids=["sms-unknown", "sms-idempotent"])
async def test_worker_killed_three_times_mid_campaign(
    make_stack: StackFactory, tmp_path: Path, sms_idempotent: bool
) -> None:
    stack = await make_stack(worker=False, batch_size=size(250, 500), sms_idempotent=sms_idempotent)
    audience = await make_audience(stack.engine, stack.tenant, N, no_phone_every=7, email_opt_out_every=9)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t)
    total = expected_messages(audience)

    workers = [start_worker(stack.settings, tmp_path / "worker-0.log")]
    at_kills: list[int] = []
    kill_times: list[datetime] = []
    try:
        assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
        for k, share in enumerate((0.15, 0.4, 0.65), start=1):
            await until_received(stack, audience, int(total * share), worker=workers[-1], timeout=180)
            kill(workers[-1])
            kill_times.append(datetime.now(UTC))
            at_kills.append(received(stack, audience))
            workers.append(start_worker(stack.settings, tmp_path / f"worker-{k}.log"))
        await wait_for(stack, cid, "COMPLETED", timeout=300)
    finally:
        for worker in workers:
            kill(worker)
    assert at_kills[-1] < total, "the last kill came after the campaign had finished sending"

    bound = unanswered_bound(stack.settings)
    per_kill = await unknown_per_kill(stack, cid, kill_times)
    described = "; ".join(
        f"kill {k}: {c['EMAIL']} EMAIL (<= {bound['EMAIL']}), {c['SMS']} SMS (<= {bound['SMS']})"
        for k, c in enumerate(per_kill, start=1)
    )
    figures = await reconcile(
        stack,
        cid,
        audience,
        case="worker SIGKILL" + (" (idempotent SMS provider)" if sms_idempotent else ""),
        faults=f"3 SIGKILLs of the worker (at {', '.join(f'{n:,}' for n in at_kills)} messages); {described}",
        unknown_bound=3 * sum(bound.values()),
    )
    for counts in per_kill:
        for channel, n in counts.items():
            assert n <= bound[channel], f"{n} {channel} UNKNOWN after one kill, at most {bound[channel]}"
    phones = {c["phone"] for c in audience.customers if c["phone"]}
    keys = [m.idempotency_key for m in stack.sms.messages if m.to in phones]
    assert len(keys) == len(set(keys)), "the SMS provider holds a message twice"
    if sms_idempotent:
        # In-flight SMS were posted again with their key: none is UNKNOWN, none doubled.
        assert all(c["SMS"] == 0 for c in per_kill)
    else:
        # Never re-posted: the killed workers' in-flight SMS are UNKNOWN, not sent again.
        assert all(stack.sms.attempts[key] == 1 for key in keys), "an SMS was posted twice"
    assert figures.sent + figures.unknown >= figures.received
