"""Sends are counted by the ledger step that records them (docs/architecture.md, "Counting sends").

The step inserts each SENT interaction already counted, the recipient's first-of-a-kind row, and
one `counter_deltas` row per channel; the roll-ups fold those rows into the counters. These tests
run the real step and the real roll-ups against Postgres and read every figure the API serves
(`/stats`, the interactions' total, a campaign's and the list's counts) before and after the fold.
"""

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.ids import new_id
from db import rollups, stats
from db.bench_seed import seed_ledger_run
from db.campaign_counts import recipient_counts
from db.driver import driver_of
from db.hot_reads import campaign_view
from db.ledger.sends import AnswerRow, Claim, write_step

AT = datetime(2026, 12, 3, 9, 15, tzinfo=UTC)


async def _campaign(engine: AsyncEngine) -> tuple[str, str, str]:
    tenant, campaign = new_id("tenant"), new_id("campaign")
    run = f"{campaign}.r1"
    async with engine.begin() as conn:
        await seed_ledger_run(conn, tenant=tenant, campaign=campaign, run=run, targets=3)
    return tenant, campaign, run


async def _send_three(conn: AsyncConnection, tenant: str, campaign: str, run: str) -> None:
    """cust_a gets an email and an SMS, cust_b an email; the answers' step is then replayed, as
    a group commit whose reply was lost is."""
    claims = [
        Claim(new_id("delivery"), run, "cust_a", "EMAIL", "a@example.com"),
        Claim(new_id("delivery"), run, "cust_a", "SMS", "+15550000001"),
        Claim(new_id("delivery"), run, "cust_b", "EMAIL", "b@example.com"),
    ]
    claimed = await write_step(
        conn, campaign_id=campaign, tenant_id=tenant, answers=[], released=[], claims=claims, at=AT
    )
    assert len(claimed) == 3
    answered = AT + timedelta(seconds=1)
    answers = [
        AnswerRow(c.id, "SENT", None, None, answered, f"pm-{c.id}", new_id("interaction"), "SENT")
        for c in claims
    ]
    for _ in range(2):
        await write_step(
            conn, campaign_id=campaign, tenant_id=tenant, answers=answers, released=[], claims=[], at=answered
        )


async def _figures(conn: AsyncConnection, tenant: str, campaign: str) -> dict[str, object]:
    figures = await stats.campaign_stats(conn, campaign)
    view = await campaign_view(await driver_of(conn), [tenant], campaign)
    assert view is not None
    return {
        "sent": figures.totals.sent,
        "by_channel": {ch: c.sent for ch, c in figures.by_channel.items()},
        "timeline": [(b.hour, b.sent) for b in figures.timeline],
        "interactions": await stats.count_interactions(conn, campaign, stats.InteractionFilter(type="SENT")),
        "list": (await recipient_counts(conn, [campaign]))[campaign].sent,
        "campaign": view.counts.sent,
        "progress": (await rollups.counters_for(conn, campaign))[(rollups.ALL, "SENT")],
    }


EXPECTED = {
    "sent": 2,
    "by_channel": {"EMAIL": 2, "SMS": 1},
    "timeline": [(AT.replace(minute=0), 2)],
    "interactions": 3,
    "list": 2,
    "campaign": 2,
    "progress": (2, 3),
}


async def _deltas(conn: AsyncConnection, campaign: str) -> set[tuple[str, int, int]]:
    rows = await conn.execute(
        text("SELECT channel, recipients, events FROM counter_deltas WHERE campaign_id = :c"), {"c": campaign}
    )
    return {(r[0], int(r[1]), int(r[2])) for r in rows}


async def test_a_step_counts_its_sends_once_and_every_read_sees_them_before_the_fold(
    engine: AsyncEngine,
) -> None:
    tenant, campaign, run = await _campaign(engine)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await _send_three(conn, tenant, campaign, run)
        # Counted once, though the answers' commit ran twice; nothing left for a roll-up to flip.
        assert await _deltas(conn, campaign) == {("EMAIL", 0, 2), ("SMS", 0, 1), ("ALL", 2, 3)}
        # A SENT is its ledger row: no interaction row is written, and the page lists the rows.
        logged = await conn.execute(
            text("SELECT count(*) FROM interactions WHERE campaign_id = :c AND type = 'SENT'"),
            {"c": campaign},
        )
        assert logged.scalar_one() == 0
        listed = await stats.page_interactions(conn, campaign, stats.InteractionFilter(type="SENT"), 0, 10)
        assert sorted((r["type"], r["channel"], r["occurred_at"]) for r in listed) == [
            ("SENT", "EMAIL", AT + timedelta(seconds=1)),
            ("SENT", "EMAIL", AT + timedelta(seconds=1)),
            ("SENT", "SMS", AT + timedelta(seconds=1)),
        ]
        assert await _figures(conn, tenant, campaign) == EXPECTED
    async with engine.begin() as conn:
        assert await rollups.roll_up(conn, campaign_id=campaign) == 0  # no interaction to flip
    async with engine.connect() as conn:
        assert await _deltas(conn, campaign) == set()
        assert await _figures(conn, tenant, campaign) == EXPECTED


async def test_the_background_roll_up_folds_what_no_page_did(engine: AsyncEngine) -> None:
    """A page that died before its roll-up leaves its tallies: the API's pass folds them."""
    tenant, campaign, run = await _campaign(engine)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await _send_three(conn, tenant, campaign, run)
    folded: int | None = None
    while folded != 0:  # other tests' rows may be waiting too; the pass takes them in batches
        async with engine.begin() as conn:
            folded = await rollups.roll_up_pending(conn, limit=1000)
        async with engine.connect() as conn:
            if not await _deltas(conn, campaign):
                break
    async with engine.connect() as conn:
        assert await _deltas(conn, campaign) == set()
        assert await _figures(conn, tenant, campaign) == EXPECTED
        counters = await conn.execute(
            text("SELECT channel, recipients, events FROM campaign_counters WHERE campaign_id = :c"),
            {"c": campaign},
        )
        assert {(r[0], int(r[1]), int(r[2])) for r in counters} == {
            ("EMAIL", 0, 2),
            ("SMS", 0, 1),
            ("ALL", 2, 3),
        }
