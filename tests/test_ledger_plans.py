"""The ledger writer's step is planned for its own rows, never from a cached generic plan.

A generic plan made while `deliveries` had no statistics walks every PENDING index entry on each
step, so a page gets slower with every message the table holds (db.ledger.sends.WRITER_SESSION).
These tests run the writer's real steps against the real Postgres and read, on the writer's own
session, how Postgres planned them.
"""

from typing import cast

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.send.model import Answer, Message, Outgoing
from activities.send.writer import LedgerWriter
from core.ids import new_id
from db.bench_seed import seed_ledger_run

STEPS = 40


async def _campaign(engine: AsyncEngine) -> tuple[str, str, str]:
    tenant, campaign = new_id("tenant"), new_id("campaign")
    run = f"{campaign}.r1"
    async with engine.begin() as conn:
        await seed_ledger_run(conn, tenant=tenant, campaign=campaign, run=run, targets=STEPS)
    return tenant, campaign, run


def _outgoing(run: str, i: int) -> Outgoing:
    # The page's row of the customer, as db.ledger.sends.run_page returns it (a mapping).
    customer = {"id": f"customer_plan{i:05d}", "run_id": run, "phone": f"+1555{i:07d}", "email": None}
    return Outgoing(Message(cast(RowMapping, customer), "SMS"), new_id("delivery"), body="hi")


async def test_every_step_is_planned_for_its_own_rows(engine: AsyncEngine) -> None:
    tenant, campaign, run = await _campaign(engine)
    writer = LedgerWriter(engine, campaign_id=campaign, tenant_id=tenant)
    held: Outgoing | None = None
    try:
        for i in range(STEPS):
            out = _outgoing(run, i)
            answers = [Answer.sent(held, f"SM{i}")] if held is not None else []
            assert await writer.step(answers=answers, claim=out)
            held = out
        assert held is not None
        await writer.step(answers=[Answer.sent(held, "SMlast")])
        conn = writer._conn  # the writer's own session: prepared statements are per session
        assert conn is not None
        plans = (
            await conn.execute(
                text(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement LIKE '%INSERT INTO deliveries%' AND statement LIKE '%WITH a AS%'"
                )
            )
        ).all()
        # psycopg prepares the text once per set of argument types (empty arrays differ): add them.
        assert (sum(p[0] for p in plans), sum(p[1] for p in plans)) == (0, STEPS + 1)
    finally:
        await writer.close()
    async with engine.connect() as conn:
        sent = await conn.execute(
            text("SELECT count(*) FROM deliveries WHERE run_id = :r AND outcome = 'SENT'"), {"r": run}
        )
        assert sent.scalar_one() == STEPS


async def test_the_setting_does_not_outlive_the_page(engine: AsyncEngine) -> None:
    """The writer's connection goes back to the worker's pool with the server's default."""
    tenant, campaign, run = await _campaign(engine)
    writer = LedgerWriter(engine, campaign_id=campaign, tenant_id=tenant)
    assert await writer.step(claim=_outgoing(run, 0))
    conn = writer._conn
    assert conn is not None
    driver = (await conn.get_raw_connection()).driver_connection
    assert (await conn.execute(text("SHOW plan_cache_mode"))).scalar_one() == "force_custom_plan"
    await writer.close()
    async with engine.connect() as other:
        same = (await other.get_raw_connection()).driver_connection
        if same is driver:  # the pool handed the writer's connection on: it must be reset
            assert (await other.execute(text("SHOW plan_cache_mode"))).scalar_one() == "auto"
