"""A page's ledger writer gives back every connection it took, even one cut while it was set up.

The writer opens a connection of its own per lane and sets its session up for the page
(db.ledger.sends.prepare_writer) before the first step runs on it. When Postgres cuts that
connection in between (a restart, an administrator's `pg_terminate_backend`), the step is retried
on a fresh connection, as for a cut mid-step; the cut connection must still go back to the pool.
A connection left for the garbage collector holds its pool slot until a collection happens to find
it, and SQLAlchemy warns when it does (seen once in the Postgres-cut fault suite).
"""

import asyncio
from typing import Any, cast

import psycopg
from sqlalchemy import RowMapping, event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from activities.send.model import Message, Outgoing
from activities.send.writer import LedgerWriter
from core.ids import new_id
from db.bench_seed import seed_ledger_run

PENDING = text("SELECT customer_id FROM deliveries WHERE run_id = :r AND outcome = 'PENDING'")


async def test_a_lane_connection_cut_before_its_first_step_is_given_back(
    engine: AsyncEngine, database_url: str
) -> None:
    tenant, campaign = new_id("tenant"), new_id("campaign")
    run = f"{campaign}.r1"
    async with engine.begin() as conn:
        await seed_ledger_run(conn, tenant=tenant, campaign=campaign, run=run, targets=1)
    customer = {"id": "customer_cut00001", "run_id": run, "phone": "+15550000001", "email": None}
    claim = Outgoing(Message(cast(RowMapping, customer), "SMS"), new_id("delivery"), body="hi")

    cut: list[int] = []

    def cut_first_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        """Terminate the backend of the first connection checked out, right after checkout (the
        writer's lane connection): its session set-up is the first statement to find it gone."""
        if cut:
            return
        pid = int(dbapi_connection.driver_connection.info.backend_pid)
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        cut.append(pid)

    pool = cast(QueuePool, engine.sync_engine.pool)
    assert pool.checkedout() == 0
    event.listen(engine.sync_engine, "checkout", cut_first_checkout)
    try:
        writer = LedgerWriter(engine, campaign_id=campaign, tenant_id=tenant)
        assert await asyncio.wait_for(writer.step(claim=claim), 30)  # retried on a fresh connection
        await writer.close()
    finally:
        event.remove(engine.sync_engine, "checkout", cut_first_checkout)
    assert len(cut) == 1
    assert pool.checkedout() == 0, "a cut lane connection was left for the garbage collector"
    async with engine.connect() as conn:
        assert [r[0] for r in await conn.execute(PENDING, {"r": run})] == ["customer_cut00001"]
