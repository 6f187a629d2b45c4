"""The ledger writer's step reads `deliveries` by primary key, in plans made page by page.

After five executions Postgres may keep one generic plan of a prepared statement for the session.
Made while `deliveries` was small, that plan read the whole table, so a connection kept from then
on got slower with every message the table held; so each page's writer plans on a connection of
its own, discarded at the page's end, from the table as it is (db.ledger.sends.prepare_writer). These
tests run the writer's real steps against the real Postgres and ask the writer's own session how
it runs the step now (`EXPLAIN EXECUTE` of the prepared statement shows the plan it keeps).
"""

from datetime import UTC, datetime
from typing import cast

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.send.model import Message, Outgoing
from activities.send.writer import LedgerWriter
from core.ids import new_id
from db.bench_seed import seed_ledger_run
from db.ledger.sends import AnswerRow, Claim, prepare_writer, write_step
from tests.plans import generic_plan, scans

STEPS = 12
WAVE = 16


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


def _claim(run: str, i: int) -> Claim:
    return Claim(new_id("delivery"), run, f"customer_plan{i:05d}", "SMS", f"+1555{i:07d}")


async def test_the_kept_plan_reads_deliveries_by_primary_key(engine: AsyncEngine) -> None:
    tenant, campaign, run = await _campaign(engine)
    async with engine.begin() as conn:  # a ledger of some size, as any but a new database has
        await conn.execute(
            text(
                "INSERT INTO deliveries (id, run_id, campaign_id, tenant_id, customer_id, channel, outcome)"
                " SELECT 'dfill_' || md5(:c || g), :r, :c, :t, 'customer_fill' || g, 'SMS', 'SENT'"
                " FROM generate_series(1, 20000) g"
            ),
            {"c": campaign, "r": run, "t": tenant},
        )
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await prepare_writer(conn)  # as a page's writer starts
        held: list[Claim] = []
        for step in range(STEPS + 1):  # steps of WAVE answers and WAVE claims, as at full speed
            at = datetime.now(UTC)
            answers = [
                AnswerRow(c.id, "SENT", None, None, at, f"SM{c.id}", new_id("interaction"), "SENT")
                for c in held
            ]
            held = [_claim(run, step * WAVE + k) for k in range(WAVE)] if step < STEPS else []
            await write_step(
                conn, campaign_id=campaign, tenant_id=tenant, answers=answers, released=[], claims=held, at=at
            )
        statements = (
            await conn.execute(
                text(
                    "SELECT name, cardinality(parameter_types), generic_plans FROM pg_prepared_statements"
                    " WHERE statement LIKE '%INSERT INTO deliveries%' AND statement LIKE '%WITH a AS%'"
                )
            )
        ).all()
        # psycopg prepares the text once per set of argument types (empty arrays differ); the one
        # that ran the full steps was planned generically, once, and kept that plan.
        assert max(s[2] for s in statements) > 0
        for name, n_params, generic in statements:
            if not generic:
                continue
            reads = scans(await generic_plan(conn, name, n_params), "deliveries")
            assert reads and all(index == "deliveries_pkey" for _, index in reads), reads
        sent = await conn.execute(
            text(
                "SELECT count(*) FROM deliveries WHERE run_id = :r AND customer_id LIKE 'customer_plan%'"
                " AND outcome = 'SENT'"
            ),
            {"r": run},
        )
        assert sent.scalar_one() == STEPS * WAVE
        await conn.invalidate()  # as the writer does: its session is not the pool's


async def test_a_page_writer_session_never_goes_back_to_the_pool(engine: AsyncEngine) -> None:
    """The writer's session plans generically for its page only: the connection is discarded at
    the page's end, so no later borrower (nor the next page) inherits the setting or the plan."""
    tenant, campaign, run = await _campaign(engine)
    writer = LedgerWriter(engine, campaign_id=campaign, tenant_id=tenant)
    assert await writer.step(claim=_outgoing(run, 0))
    conn = writer._lanes[0].conn
    assert conn is not None
    driver = (await conn.get_raw_connection()).driver_connection
    assert (await conn.execute(text("SHOW plan_cache_mode"))).scalar_one() == "force_generic_plan"
    await writer.close()
    assert driver is not None and driver.closed
    for _ in range(3):  # whatever the pool hands out next has the server's default
        async with engine.connect() as other:
            assert (await other.get_raw_connection()).driver_connection is not driver
            assert (await other.execute(text("SHOW plan_cache_mode"))).scalar_one() == "auto"
