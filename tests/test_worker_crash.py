"""Issue 2 acceptance: SIGKILL the worker mid-campaign; nothing is doubled, nothing silently lost."""

import asyncio
import signal
import subprocess
from collections import Counter
from pathlib import Path

from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.faults.drive import in_flight
from tests.faults.processes import start_worker as start_worker_process
from tests.helpers import create_campaign, ledger, received_emails, received_once, received_sms, wait_for

ROOT = Path(__file__).resolve().parents[1]


def start_worker(stack: Stack, log: Path) -> subprocess.Popen[bytes]:
    """A `python worker.py` process with the test stack's settings (tests.faults.processes)."""
    return start_worker_process(stack.settings, log)


async def test_sigkill_mid_campaign_leaves_no_duplicates_and_bounded_unknowns(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = await make_stack(worker=False, batch_size=200, send_concurrency=8)
    audience = await make_audience(stack.engine, stack.tenant, 1000, no_phone_every=7, email_opt_out_every=9)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t)

    first = start_worker(stack, tmp_path / "worker1.log")
    second = None
    try:
        r = await stack.call("POST", f"/campaigns/{cid}/execute")
        assert r.status_code == 200, r.text
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while (
            sum(received_emails(stack, audience).values()) + sum(received_sms(stack, audience).values()) < 400
        ):
            if loop.time() > deadline or first.poll() is not None:
                log = (tmp_path / "worker1.log").read_text()
                counts = (
                    sum(received_emails(stack, audience).values()),
                    sum(received_sms(stack, audience).values()),
                )
                progress = await stack.client.get_workflow_handle(f"campaign-{cid}").query("progress")
                raise AssertionError(f"worker never got going: {counts} {progress} {log[-3000:]}")
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        at_kill = sum(received_emails(stack, audience).values()) + sum(received_sms(stack, audience).values())
        assert at_kill < 1800, "the kill came too late to be a mid-campaign crash"

        second = start_worker(stack, tmp_path / "worker2.log")
        body = await wait_for(stack, cid, "COMPLETED", timeout=120)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    emails, sms = received_once(stack, audience)

    rows = await ledger(stack, cid)
    assert len(rows) == 2000
    by_key = {(row["customerId"], row["channel"]): row for row in rows}
    unknown = [row for row in rows if row["outcome"] == "UNKNOWN"]
    for c in audience.customers:
        if c["email"] in audience.emails() and c["email"] not in emails:
            assert by_key[(c["id"], "EMAIL")]["outcome"] == "UNKNOWN"
        if c["phone"] in audience.phones() and c["phone"] not in sms:
            assert by_key[(c["id"], "SMS")]["outcome"] == "UNKNOWN"
    # At most the messages in flight at the instant of the kill: two per provider slot.
    assert len(unknown) <= in_flight(stack.settings)
    outcomes = Counter(row["outcome"] for row in rows)
    assert outcomes["PENDING"] == 0
    received = sum(emails.values()) + sum(sms.values())
    # Messages that reached a sink but whose answer the crash swallowed are UNKNOWN, not SENT.
    assert outcomes["SENT"] <= received <= outcomes["SENT"] + outcomes["UNKNOWN"]
    for row in rows:
        if row["outcome"] == "SENT":
            address = row["address"]
            assert (emails if row["channel"] == "EMAIL" else sms)[address] == 1
    assert body["unknownCount"] == len(unknown)
