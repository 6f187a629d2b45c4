"""A page's ledger writer keeps up to two commits in flight (activities/send/writer.py, "Why lanes").

A slot sends its next message only once that message's claim has committed, so with one commit at
a time a step waits for the commit in flight before its own. These tests hold one step's commit in
the database (a concurrent transaction holds the same ledger key) and watch whether a second step
commits meanwhile: it does on a page with two lanes (an SMS page), it waits on a page with one (an
email page); either way both claims end in the ledger once the holder goes away.
"""

import asyncio
from typing import cast

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.send.deliverers import EmailDeliverer, SmsDeliverer
from activities.send.model import Message, Outgoing
from activities.send.writer import LedgerWriter
from core.ids import new_id
from db.bench_seed import seed_ledger_run

HOLD = text(
    "INSERT INTO deliveries (id, run_id, campaign_id, tenant_id, customer_id, channel, outcome)"
    " VALUES (:id, :r, :c, :t, :customer, 'SMS', 'PENDING')"
)
PENDING = text("SELECT id FROM deliveries WHERE run_id = :r AND outcome = 'PENDING' ORDER BY customer_id")


def _outgoing(run: str, i: int) -> Outgoing:
    customer = {"id": f"customer_lane{i:05d}", "run_id": run, "phone": f"+1555{i:07d}", "email": None}
    return Outgoing(Message(cast(RowMapping, customer), "SMS"), new_id("delivery"), body="hi")


async def _second_step_while_first_is_held(engine: AsyncEngine, lanes: int) -> bool:
    """Whether a second step commits while the first one's commit is held; checks the ledger."""
    tenant, campaign = new_id("tenant"), new_id("campaign")
    run = f"{campaign}.r1"
    async with engine.begin() as conn:
        await seed_ledger_run(conn, tenant=tenant, campaign=campaign, run=run, targets=2)
    held, free = _outgoing(run, 0), _outgoing(run, 1)
    writer = LedgerWriter(engine, campaign_id=campaign, tenant_id=tenant)
    writer.use_lanes(lanes)
    async with engine.connect() as holder:
        holding = await holder.begin()  # the same (run, customer, channel), not committed yet
        params = {"id": new_id("delivery"), "r": run, "c": campaign, "t": tenant}
        await holder.execute(HOLD, {**params, "customer": "customer_lane00000"})
        first = asyncio.create_task(writer.step(claim=held))
        await asyncio.sleep(0.3)
        assert not first.done()  # its commit waits on the holder's row
        second = asyncio.create_task(writer.step(claim=free))
        done, _ = await asyncio.wait({second}, timeout=1.5)
        committed_meanwhile = second in done
        assert not first.done()
        await holding.rollback()
    assert await asyncio.wait_for(first, 10)
    assert await asyncio.wait_for(second, 10)
    await writer.close()
    async with engine.connect() as conn:
        rows = [r[0] for r in await conn.execute(PENDING, {"r": run})]
    assert rows == [held.delivery_id, free.delivery_id]
    return committed_meanwhile


async def test_two_lanes_commit_a_step_while_another_is_in_the_database(engine: AsyncEngine) -> None:
    assert await _second_step_while_first_is_held(engine, lanes=SmsDeliverer.commit_lanes)


async def test_one_lane_makes_a_step_wait_for_the_commit_in_flight(engine: AsyncEngine) -> None:
    assert not await _second_step_while_first_is_held(engine, lanes=EmailDeliverer.commit_lanes)
