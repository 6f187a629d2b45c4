"""A step that may wait commits with the other sending slots' steps (activities/send/writer.py,
"Gathering"): it waits until every sending slot has a step queued, or until its time is up, and a
step that may not wait commits what is queued at once. Steps of one commit share its time, which
stamps their claims (`claimed_at`), so the ledger shows which claims were committed together.
"""

import asyncio
import time
from typing import cast

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.send.model import Message, Outgoing
from activities.send.writer import LedgerWriter
from core.ids import new_id
from db.bench_seed import seed_ledger_run

CLAIMS = text("SELECT id, claimed_at FROM deliveries WHERE run_id = :r AND outcome = 'PENDING'")


async def _page(engine: AsyncEngine, targets: int) -> tuple[LedgerWriter, list[Outgoing], str]:
    tenant, campaign = new_id("tenant"), new_id("campaign")
    run = f"{campaign}.r1"
    async with engine.begin() as conn:
        await seed_ledger_run(conn, tenant=tenant, campaign=campaign, run=run, targets=targets)
    items = []
    for i in range(targets):
        customer = {"id": f"customer_g{i:05d}", "run_id": run, "email": f"g{i}@example.com", "phone": None}
        message = Message(cast(RowMapping, customer), "EMAIL")
        items.append(Outgoing(message, new_id("delivery")))
    return LedgerWriter(engine, campaign_id=campaign, tenant_id=tenant), items, run


async def _stamps(engine: AsyncEngine, run: str) -> dict[str, object]:
    async with engine.connect() as conn:
        return {r[0]: r[1] for r in await conn.execute(CLAIMS, {"r": run})}


async def test_a_waiting_step_commits_once_every_sending_slot_has_stepped(engine: AsyncEngine) -> None:
    writer, (a, b), run = await _page(engine, 2)
    with writer.sending(), writer.sending():
        first = asyncio.create_task(writer.step(claim=a, wait=30.0))
        await asyncio.sleep(0.3)
        assert not first.done()  # the other slot has not stepped: the commit waits for it
        assert await _stamps(engine, run) == {}
        started = time.monotonic()
        assert await writer.step(claim=b, wait=30.0)  # the group is full: both commit now
        assert time.monotonic() - started < 5
        assert await first
    await writer.close()
    stamps = await _stamps(engine, run)
    assert set(stamps) == {a.delivery_id, b.delivery_id}
    assert stamps[a.delivery_id] == stamps[b.delivery_id]  # one commit


async def test_a_waiting_step_commits_when_its_time_is_up(engine: AsyncEngine) -> None:
    writer, (a, _), run = await _page(engine, 2)
    with writer.sending(), writer.sending():
        started = time.monotonic()
        assert await writer.step(claim=a, wait=0.2)  # the other slot never steps
        waited = time.monotonic() - started
    await writer.close()
    assert 0.15 < waited < 5
    assert set(await _stamps(engine, run)) == {a.delivery_id}


async def test_a_step_that_may_not_wait_commits_the_waiting_ones_with_it(engine: AsyncEngine) -> None:
    writer, (a, b, c), run = await _page(engine, 3)
    with writer.sending(), writer.sending(), writer.sending():
        waiting = asyncio.create_task(writer.step(claim=a, wait=30.0))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        assert await asyncio.wait_for(writer.step(claim=b), 5)  # no wait: commits now, `a` with it
        assert await asyncio.wait_for(waiting, 5)
    await writer.close()
    stamps = await _stamps(engine, run)
    assert set(stamps) == {a.delivery_id, b.delivery_id}
    assert stamps[a.delivery_id] == stamps[b.delivery_id]
    assert c.delivery_id not in stamps


async def test_a_slot_that_stops_sending_releases_a_waiting_commit(engine: AsyncEngine) -> None:
    writer, (a, _), run = await _page(engine, 2)
    with writer.sending():
        with writer.sending():
            waiting = asyncio.create_task(writer.step(claim=a, wait=30.0))
            await asyncio.sleep(0.2)
            assert not waiting.done()
        # The second slot left without a step (its feed ended): the group is full without it.
        assert await asyncio.wait_for(waiting, 5)
    await writer.close()
    assert set(await _stamps(engine, run)) == {a.delivery_id}


HOLD = text(
    "INSERT INTO deliveries (id, run_id, campaign_id, tenant_id, customer_id, channel, outcome)"
    " VALUES (:id, :r, :c, :t, :customer, 'EMAIL', 'PENDING')"
)


async def test_a_lane_that_commits_while_another_gathers_leaves_it_a_way_out(engine: AsyncEngine) -> None:
    """Two lanes (a page with SMS and email): lane A's commit is held in the database, lane B
    starts gathering a waiting step, then A's commit ends and A loops back to the queue. Both
    must come out of their wait, and the writer must close (a lane left waiting forever held its
    page and its connections: the bug this guards against)."""
    writer, (held, waiting), run = await _page(engine, 2)
    writer.use_lanes(2)
    campaign = run.split(".")[0]
    async with engine.connect() as conn:
        tenant = (
            await conn.execute(text("SELECT tenant_id FROM campaigns WHERE id = :c"), {"c": campaign})
        ).scalar()
    async with engine.connect() as holder:
        holding = await holder.begin()
        params = {"id": new_id("delivery"), "r": run, "c": campaign, "t": tenant}
        await holder.execute(HOLD, {**params, "customer": held.message.customer_id})
        with writer.sending(), writer.sending(), writer.sending():
            first = asyncio.create_task(writer.step(claim=held))  # lane A: waits on the holder
            await asyncio.sleep(0.3)
            second = asyncio.create_task(writer.step(claim=waiting, wait=0.5))  # lane B gathers
            await asyncio.sleep(0.05)
            await holding.rollback()  # A commits and loops back while B still gathers
            assert await asyncio.wait_for(first, 5)
            assert await asyncio.wait_for(second, 5)
    await asyncio.wait_for(writer.close(), 5)
    assert set(await _stamps(engine, run)) == {held.delivery_id, waiting.delivery_id}
