"""A send page's read of its recipients costs what it returns, on analyzed tables, and without JIT.

A send page (`run_page`) reads a range of customer ids of its run. Once Postgres has statistics,
it merge-joins that range with the customers' primary key, and without the range repeated on the
customers side it read that key from its start: the last page of a run read nearly every customer
of the tenant (the comment at the statement, db/ledger/sends.py). Counted here with the
transaction's own table statistics: the customers fetched by index while reading the last page of
a 4,000-recipient run.
"""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.ids import new_id
from db.bench_seed import seed_ledger_run, seed_static_audience
from db.engine import make_engine
from db.ledger.sends import run_page

RECIPIENTS = 4_000
CHUNK = 1_000
FETCHED = text(
    "SELECT coalesce(sum(idx_tup_fetch), 0) FROM pg_stat_xact_user_tables WHERE relname = 'customers'"
)
RECIPIENTS_OF_RUN = text(
    "INSERT INTO run_recipients (run_id, customer_id) SELECT :r, id FROM customers WHERE tenant_id = :t"
)
IDS = text("SELECT id FROM customers WHERE tenant_id = :t ORDER BY id")


async def _fetched(conn: AsyncConnection) -> int:
    return int((await conn.execute(FETCHED)).scalar_one())


async def _merge_joins(conn: AsyncConnection) -> None:
    """The plan a large analyzed audience gets (a merge join on the customer id), forced for this
    transaction: this test's small share of a shared database may be planned otherwise."""
    await conn.execute(text("SET LOCAL enable_nestloop = off"))
    await conn.execute(text("SET LOCAL enable_hashjoin = off"))


async def test_the_last_page_of_a_run_reads_only_its_own_customers(engine: AsyncEngine) -> None:
    tenant = new_id("tenant")
    campaign = new_id("campaign")
    run = f"{campaign}.r1"
    async with engine.begin() as conn:
        await seed_static_audience(conn, tenant, RECIPIENTS)
        await seed_ledger_run(conn, tenant=tenant, campaign=campaign, run=run, targets=RECIPIENTS)
        await conn.execute(RECIPIENTS_OF_RUN, {"r": run, "t": tenant})
    async with engine.connect() as conn:
        ids = list((await conn.execute(IDS, {"t": tenant})).scalars())
    after, upto = ids[-CHUNK - 1], ids[-1]
    # In a transaction of its own, whose statistics count what it fetched.
    async with engine.begin() as conn:
        await _merge_joins(conn)
        before = await _fetched(conn)
        page = await run_page(conn, tenant_id=tenant, run_id=run, after=after, upto=upto, limit=CHUNK)
        page_fetched = await _fetched(conn) - before

    assert [row["id"] for row in page] == ids[-CHUNK:]
    # Its own rows (and the few index probes of consent per row), never the run's.
    assert page_fetched <= 2 * CHUNK, page_fetched


async def test_the_service_sessions_run_without_jit(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW jit"))).scalar_one() == "off"
    finally:
        await engine.dispose()
