"""What a send writes to the indexes of `deliveries` and `interactions` (migrations 0014, 0015),
and that the readers of the partial ones still find their rows through them.

A claim (PENDING, no provider id) takes no entry in `ix_deliveries_provider_message` nor in
`ix_deliveries_campaign_sent`; its SENT answer takes one in each, and writes no interaction row
(the ledger row is the SENT the interactions page lists). `ix_interactions_delivery` holds no SENT
rows at all. The sizes are read from the real Postgres around a batch of real ledger steps; the
plans from the readers' own prepared statements, planned for any argument (a generic plan), as a
long-lived connection keeps them.
"""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.ids import new_id
from db.bench_seed import seed_ledger_run
from db.interactions import mark_link_bursts
from db.ledger.reads import resolve_messages
from db.ledger.sends import AnswerRow, Claim, write_step
from tests.plans import generic_plan, scans

MESSAGES = 1_500
STEP = 50


async def _size(conn: AsyncConnection, index: str) -> int:
    return int(
        (await conn.execute(text("SELECT pg_relation_size(CAST(:i AS regclass))"), {"i": index})).scalar_one()
    )


async def _sizes(engine: AsyncEngine) -> dict[str, int]:
    names = (
        "ix_deliveries_provider_message",
        "ix_interactions_delivery",
        "ix_deliveries_campaign_sent",
        "ix_deliveries_campaign_customer",  # a full index of the same table: claims grow it
    )
    async with engine.connect() as conn:
        return {name: await _size(conn, name) for name in names}


async def _send(engine: AsyncEngine, *, answered: bool) -> tuple[str, str, list[Claim]]:
    """Claim MESSAGES messages in steps, and answer them all SENT with a provider id if `answered`."""
    tenant, campaign = new_id("tenant"), new_id("campaign")
    run = f"{campaign}.r1"
    async with engine.begin() as conn:
        await seed_ledger_run(conn, tenant=tenant, campaign=campaign, run=run, targets=MESSAGES)
    claims = [
        Claim(new_id("delivery"), run, f"customer_ix{i:06d}", "SMS", f"+1555{i:07d}") for i in range(MESSAGES)
    ]
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        for start in range(0, MESSAGES, STEP):
            await write_step(
                conn,
                campaign_id=campaign,
                tenant_id=tenant,
                answers=[],
                released=[],
                claims=claims[start : start + STEP],
                at=datetime.now(UTC),
            )
        for start in range(0, MESSAGES if answered else 0, STEP):
            at = datetime.now(UTC)
            answers = [
                AnswerRow(c.id, "SENT", None, None, at, f"SM{c.id}", new_id("interaction"), "SENT")
                for c in claims[start : start + STEP]
            ]
            await write_step(
                conn, campaign_id=campaign, tenant_id=tenant, answers=answers, released=[], claims=[], at=at
            )
    return tenant, campaign, claims


async def test_a_claim_takes_no_entry_in_the_partial_indexes_and_its_answer_one_each(
    engine: AsyncEngine,
) -> None:
    before = await _sizes(engine)
    await _send(engine, answered=False)
    claimed = await _sizes(engine)
    # 1,500 claims: the full index on the same table grew by pages; the partial ones did not.
    assert claimed["ix_deliveries_campaign_customer"] - before["ix_deliveries_campaign_customer"] >= 4 * 8192
    assert claimed["ix_deliveries_provider_message"] == before["ix_deliveries_provider_message"]
    assert claimed["ix_deliveries_campaign_sent"] == before["ix_deliveries_campaign_sent"]
    _, campaign, claims = await _send(engine, answered=True)
    sent = await _sizes(engine)
    # Answered SENT with provider ids: those rows are indexed now, and no interaction was logged.
    assert sent["ix_deliveries_provider_message"] - claimed["ix_deliveries_provider_message"] >= 4 * 8192
    assert sent["ix_deliveries_campaign_sent"] - claimed["ix_deliveries_campaign_sent"] >= 4 * 8192
    assert sent["ix_interactions_delivery"] == claimed["ix_interactions_delivery"]
    async with engine.connect() as conn:
        logged = await conn.execute(
            text("SELECT count(*) FROM interactions WHERE campaign_id = :c"), {"c": campaign}
        )
        assert logged.scalar_one() == 0
        # A provider's webhook still finds a message by the id the provider gave it.
        found = await resolve_messages(conn, [], [f"SM{claims[7].id}"])
        assert [m.delivery_id for m in found] == [claims[7].id]


async def _kept_plans(conn: AsyncConnection, like: str) -> list[dict[str, Any]]:
    """The generic plans the session keeps for its prepared statements whose text has `like`."""
    rows = (
        await conn.execute(
            text(
                "SELECT name, cardinality(parameter_types) FROM pg_prepared_statements"
                " WHERE statement LIKE :like AND generic_plans > 0"
            ),
            {"like": f"%{like}%"},
        )
    ).all()
    return [await generic_plan(conn, name, n_params) for name, n_params in rows]


async def test_the_readers_plan_on_the_partial_indexes_for_any_argument(engine: AsyncEngine) -> None:
    """Planned generically (no argument known), the link-burst rule still reads a message's clicks
    through `ix_interactions_delivery` (its `type <> 'SENT'` is what lets it), and the webhooks'
    resolver a message by its provider id through `ix_deliveries_provider_message`."""
    tenant, campaign, claims = await _send(engine, answered=True)
    now = datetime.now(UTC)
    async with engine.begin() as conn:  # two clicks on different links of one message, 1 s apart
        for k, link in enumerate(("l1", "l2")):
            await conn.execute(
                text(
                    "INSERT INTO interactions (id, tenant_id, campaign_id, delivery_id, customer_id, channel,"
                    " type, occurred_at, metadata, engagement_class)"
                    " VALUES (:id, :t, :c, :d, :cu, 'EMAIL', 'CLICKED', :at, CAST(:m AS jsonb), 'human')"
                ),
                {
                    "id": new_id("interaction"),
                    "t": tenant,
                    "c": campaign,
                    "d": claims[0].id,
                    "cu": "customer_ix000000",
                    "at": now + timedelta(seconds=k),
                    "m": json.dumps({"linkId": link}),
                },
            )
        await conn.execute(text("ANALYZE interactions"))
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("SET plan_cache_mode = force_generic_plan"))
        await conn.execute(text("SET enable_seqscan = off"))  # an index it cannot use shows as a Seq Scan
        changed = [await mark_link_bursts(conn, [claims[0].id]) for _ in range(6)]  # prepared after 5
        assert changed[0] == 2 and changed[1:] == [0] * 5  # both clicks are a machine's, once
        plans = await _kept_plans(conn, "class_reason")
        assert plans
        for plan in plans:
            indexes = [index for _, index in scans(plan, "interactions")]
            # Each click's other clicks are read by message (the outer scan may take the rows no
            # roll-up has counted yet by their own index); nothing reads the whole table.
            assert "ix_interactions_delivery" in indexes and "" not in indexes, indexes
        # And a provider's webhook finds a message by the provider's id through its index.
        for _ in range(6):
            found = await resolve_messages(conn, [], [f"SM{claims[3].id}"])
            assert [m.delivery_id for m in found] == [claims[3].id]
        plans = await _kept_plans(conn, "provider_message_id = ANY")
        assert plans
        for plan in plans:
            assert "ix_deliveries_provider_message" in [i for _, i in scans(plan, "deliveries")], plan
        await conn.invalidate()  # its settings are this test's only
