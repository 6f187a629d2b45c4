"""Fault: the Temporal dev server stopped and started again (same SQLite file) mid-campaign."""

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.sinks import SmsSink, SmtpSink
from tests.factories import make_audience, make_templates
from tests.faults.conftest import FULL, size
from tests.faults.drive import expected_messages, received, stack_on, until_received
from tests.faults.processes import DevServer, kill, start_worker
from tests.faults.reconcile import reconcile
from tests.helpers import create_campaign, wait_for

N = size(2_500, 10_000)
OUTAGES = 2 if FULL else 1
# Longer than the heartbeat timeout (10 s): the running page attempt times out meanwhile.
DOWN_SECONDS = 12.0


async def test_temporal_server_restarted_mid_campaign(
    database_url: str, engine: AsyncEngine, smtp_sink: SmtpSink, sms_sink: SmsSink, tmp_path: Path
) -> None:
    server = DevServer(tmp_path / "temporal.db", tmp_path / "temporal.log")
    await server.start()
    worker = None
    try:
        client = await server.connect()
        async with stack_on(client, database_url, engine, smtp_sink, sms_sink, batch_size=250) as stack:
            audience = await make_audience(
                stack.engine, stack.tenant, N, no_phone_every=7, email_opt_out_every=9
            )
            email_t, sms_t = await make_templates(stack.engine, stack.tenant)
            cid = await create_campaign(stack, audience, email_t, sms_t)
            total = expected_messages(audience)
            worker = start_worker(stack.settings, tmp_path / "worker.log")
            assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
            during: list[tuple[int, int]] = []
            for k in range(OUTAGES):
                await until_received(stack, audience, int(total * (0.2 + 0.35 * k)), worker=worker)
                server.stop()
                before = received(stack, audience)
                await asyncio.sleep(DOWN_SECONDS)
                during.append((before, received(stack, audience)))
                await server.start()
            assert received(stack, audience) < total, "the outage came after the campaign had sent"
            await wait_for(stack, cid, "COMPLETED", timeout=240)
            assert worker.poll() is None, "the worker did not survive the server's restart"

            stops = ", ".join(f"at {a:,} messages ({b - a:,} more sent while down)" for a, b in during)
            await reconcile(
                stack,
                cid,
                audience,
                case="Temporal restart",
                faults=f"{OUTAGES} x dev server stopped {DOWN_SECONDS:.0f} s and restarted ({stops})",
                # The worker keeps running while the server is down: its pages finish their waves
                # and record every answer, so an outage leaves no message UNKNOWN.
                unknown_bound=0,
                expect_unknown=set(),
            )
    finally:
        kill(worker)
        server.stop()
