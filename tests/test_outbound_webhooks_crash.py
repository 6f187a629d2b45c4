"""Outbound webhooks across worker SIGKILLs (issue 16): nothing is lost, duplicates stay few.

The worker runs as its own process (tests.faults.processes) and is killed twice: once while the
receiver is failing (the retries live in Temporal, not in the process), once while batches are
being delivered to a slow receiver (a batch may then arrive twice: receivers dedupe on event id).
Events keep being recorded while no worker runs. `CAMPAIGNS_WEBHOOKS_FULL=1`: a 2-minute outage.
"""

import asyncio
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from core.webhook_signing import verify
from db.rollups import NewInteraction, insert_interaction
from tests.conftest import Stack, StackFactory
from tests.faults.processes import kill, start_worker
from tests.test_outbound_webhooks import (
    FULL,
    Receiver,
    create_endpoint,
    outbox_ids,
    stop_endpoint,
    wait_until,
)

BATCH = 4


async def record_events(stack: Stack, n: int, type_: str) -> None:
    """n facts, each in its own transaction, as tracking and provider webhooks record them."""
    for i in range(n):
        async with stack.engine.begin() as conn:
            await insert_interaction(
                conn,
                NewInteraction(
                    tenant_id=stack.tenant,
                    campaign_id=f"campaign_{i % 3}",
                    customer_id=f"customer_{i}",
                    channel="EMAIL",
                    type=type_,
                    occurred_at=datetime.now(UTC),
                ),
            )


async def wait_for_request(receiver: Receiver, accepted: Callable[[int], bool], timeout: float) -> None:
    async def seen() -> bool:
        return any(accepted(r.status) for r in receiver.requests)

    await wait_until(seen, timeout, "a request at the receiver")


async def test_nothing_is_lost_across_worker_sigkills(make_stack: StackFactory, tmp_path: Path) -> None:
    settings = {"webhook_poll_seconds": 0.3, "webhook_retry_max_seconds": 1.0, "webhook_timeout_seconds": 2.0}
    stack = await make_stack(worker=False, webhook_batch_size=BATCH, **settings)
    loop = asyncio.get_running_loop()
    receiver = await Receiver(fail_until=loop.time() + 1_000, delay=0.25).start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        endpoint = await create_endpoint(
            stack, stack_url := receiver.url, ["message.opened", "message.clicked"]
        )
        assert stack_url
        workers.append(start_worker(stack.settings, tmp_path / "worker1.log"))
        await record_events(stack, 12, "OPENED")
        await wait_for_request(receiver, lambda status: status == 503, 30)
        kill(workers[-1])  # while failing: the retries are Temporal's, they go on with the next worker
        await record_events(stack, 12, "CLICKED")
        receiver.fail_until = loop.time() + (120 if FULL else 3)  # the outage goes on meanwhile
        workers.append(start_worker(stack.settings, tmp_path / "worker2.log"))
        await wait_for_request(receiver, lambda status: status == 204, 160 if FULL else 40)
        kill(workers[-1])  # while delivering to a slow receiver
        await record_events(stack, 12, "OPENED")
        workers.append(start_worker(stack.settings, tmp_path / "worker3.log"))
        expected = await outbox_ids(stack)
        assert len(expected) == 36

        async def all_arrived() -> bool:
            return set(receiver.accepted()) >= expected

        await wait_until(all_arrived, 60, "every event after the kills")
        await stop_endpoint(stack, endpoint["id"])
    finally:
        for proc in workers:
            kill(proc)
        await receiver.stop()
    accepted = receiver.accepted()
    assert set(accepted) == expected
    duplicates = sum(n - 1 for n in accepted.values())
    print(f"outbound webhooks across 2 SIGKILLs: {len(expected)} events, {duplicates} delivered twice")
    assert duplicates <= 2 * BATCH, "more re-deliveries than the batches in flight at the kills"
    for req in receiver.requests:
        sent_at = float(req.timestamp)
        assert verify(endpoint["secret"], req.msg_id, req.timestamp, req.signature, req.body, now=sent_at)
