"""TRIGGERED campaigns survive a worker SIGKILL mid-drain: one message per event, at most (issue 6)."""

import asyncio
import signal
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import StackFactory
from tests.factories import make_audience, make_templates
from tests.faults.drive import in_flight
from tests.helpers import create_triggered_campaign, ledger, received_emails, received_once
from tests.test_worker_crash import start_worker


async def test_sigkill_while_draining_events_doubles_nothing(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = await make_stack(worker=False, batch_size=100, send_concurrency=8)
    audience = await make_audience(stack.engine, stack.tenant, 600)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_triggered_campaign(stack, email_t, sms_t)
    now = datetime.now(UTC).isoformat()
    events = [
        {
            "id": f"up-{i}",
            "type": "tier.changed",
            "tenantId": stack.tenant,
            "customerId": c["id"],
            "occurredAt": now,
        }
        for i, c in enumerate(audience.customers)
    ]

    first = start_worker(stack, tmp_path / "worker1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
        r = await stack.call("POST", "/events/batch", json={"events": events})
        assert r.status_code == 202 and r.json()["triggered"] == 600, r.text
        # Posted twice (a client retry): accepted and ignored.
        r = await stack.call("POST", "/events/batch", json={"events": events})
        assert r.json()["duplicates"] == 600 and r.json()["triggered"] == 0

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while sum(received_emails(stack, audience).values()) < 150:
            assert loop.time() < deadline and first.poll() is None, (tmp_path / "worker1.log").read_text()[
                -3000:
            ]
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert sum(received_emails(stack, audience).values()) < 600, "the kill came too late"

        second = start_worker(stack, tmp_path / "worker2.log")
        deadline = loop.time() + 120
        while True:
            stats = (await stack.call("GET", f"/campaigns/{cid}/stats")).json()
            if stats["triggers"]["processed"] == 600:
                break
            assert loop.time() < deadline, stats["triggers"]
            await asyncio.sleep(0.2)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    emails, sms = received_once(stack, audience)
    rows = await ledger(stack, cid)
    keys = Counter((row["customerId"], row["channel"]) for row in rows)
    assert len(keys) == 1200 and set(keys.values()) == {1}, "one ledger row per (event, channel)"
    outcomes = Counter(row["outcome"] for row in rows)
    assert outcomes["PENDING"] == 0
    # Only messages in flight at the kill may be UNKNOWN; every SENT one reached its sink.
    assert outcomes["UNKNOWN"] <= in_flight(stack.settings)
    assert outcomes["SENT"] + outcomes["UNKNOWN"] == 1200
    address = {c["id"]: c for c in audience.customers}
    for row in rows:
        if row["outcome"] == "SENT":
            target = address[row["customerId"]]["email" if row["channel"] == "EMAIL" else "phone"]
            assert (emails if row["channel"] == "EMAIL" else sms)[target] == 1
