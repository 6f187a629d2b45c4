"""A/B tests (README "A/B tests") on the time-skipping server: four variants over 2,000
recipients, interactions injected so that C wins on clicks; a pause during the wait delays the
decision; after it the remaining 80% get C, and `byVariant` adds up to the campaign's counts."""

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from core.experiments import ABTest
from core.ids import new_id
from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, ledger, wait_for

N = 2_000
AB = {
    "variants": [{"key": k, "subject": f"Offer {k}"} for k in "ABCD"],
    "testPercent": 20,
    "metric": "CLICK_RATE",
    "durationHours": 4,
    "confidence": 0.95,
}


async def inject(stack: Stack, cid: str) -> None:
    """Opens for half of each variant's recipients; clicks on 75% of C's openers, 10% elsewhere."""
    rows = await ledger(stack, cid)
    async with stack.engine.begin() as conn:
        found = await conn.execute(
            text("SELECT id, customer_id, variant FROM deliveries WHERE campaign_id = :c ORDER BY id"),
            {"c": cid},
        )
        now = datetime.now(UTC)
        values = []
        seen: Counter[str] = Counter()
        for delivery_id, customer_id, variant in found:
            j = seen[variant]
            seen[variant] += 1
            if j % 2:
                continue  # every other recipient of each variant opens
            opener = j // 2
            kinds = ["OPENED"]
            if (variant == "C" and opener % 4 != 3) or (variant != "C" and opener % 10 == 0):
                kinds.append("CLICKED")  # 3 in 4 of C's openers click, 1 in 10 elsewhere
            for kind in kinds:
                values.append(
                    {
                        "id": new_id("interaction"),
                        "t": stack.tenant,
                        "c": cid,
                        "d": delivery_id,
                        "cu": customer_id,
                        "ty": kind,
                        "at": now,
                    }
                )
        await conn.execute(
            text(
                "INSERT INTO interactions (id, tenant_id, campaign_id, delivery_id, customer_id, channel,"
                " type, occurred_at) VALUES (:id, :t, :c, :d, :cu, 'EMAIL', :ty, :at)"
            ),
            values,
        )
    assert rows


async def test_four_variants_c_wins_on_clicks_and_goes_to_the_rest(
    make_fresh_timeskip_stack: StackFactory,
) -> None:
    stack = await make_fresh_timeskip_stack(batch_size=500)
    seeds = {"seeds": {"emails": ["seed@monitor.example"]}}
    assert (await stack.call("PUT", f"/tenants/{stack.tenant}/policy", json=seeds)).status_code == 200
    audience = await make_audience(stack.engine, stack.tenant, N)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None, abTest=AB)
    test = ABTest.model_validate(AB)
    slice_ = {c["id"]: test.assign(cid, c["id"], None) for c in audience.customers}
    in_test = {i for i, v in slice_.items() if v is not None}
    assert 300 <= len(in_test) <= 500 and set(Counter(v for v in slice_.values() if v)) == set("ABCD")
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200

    deadline = asyncio.get_running_loop().time() + 60
    while len(await ledger(stack, cid)) < len(in_test):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    rows = await ledger(stack, cid)
    assert {r["customerId"] for r in rows} == in_test  # only the test slice so far
    await inject(stack, cid)

    # Paused during the wait: the decision waits for the resume.
    await stack.env.sleep(timedelta(hours=1))
    assert (await stack.call("POST", f"/campaigns/{cid}/pause")).status_code == 200
    await wait_for(stack, cid, "PAUSED")
    await stack.env.sleep(timedelta(hours=4))
    await asyncio.sleep(1.0)
    view = (await stack.call("GET", f"/campaigns/{cid}/experiment")).json()
    assert view["winner"] is None and len(await ledger(stack, cid)) == len(in_test)
    assert (await stack.call("POST", f"/campaigns/{cid}/resume")).status_code == 200
    body = await wait_for(stack, cid, "COMPLETED", timeout=120)

    view = (await stack.call("GET", f"/campaigns/{cid}/experiment")).json()
    assert view["winner"] == "C", view["decision"]
    assert view["decision"]["pValue"] < 0.05 and view["decision"]["rates"]["C"] > 0.5
    subjects: Counter[str] = Counter()
    for mail in stack.smtp.snapshot():
        if mail.to in audience.emails():
            subjects[str(mail.message["Subject"])] += 1
    remainder = N - len(in_test)
    by_variant = {v["variant"]: v for v in view["byVariant"]}
    assert by_variant["C"]["sent"] == remainder + Counter(slice_.values())["C"]
    assert sum(v["sent"] for v in view["byVariant"]) == body["sentCount"] == N
    assert subjects["Offer C"] == by_variant["C"]["sent"]
    assert sum(subjects.values()) == N  # everyone exactly once
    stats = (await stack.call("GET", f"/campaigns/{cid}/stats")).json()
    assert stats["sentCount"] == N
    assert sum(v["sent"] for v in stats["byVariant"]) == stats["sentCount"]  # byVariant adds up
    assert stats["abDecision"]["winner"] == "C"
    # The seed got one copy per variant, marked, and counted nowhere.
    copies = [m for m in stack.smtp.snapshot() if m.to == "seed@monitor.example"]
    assert sorted(str(m.message["Subject"]) for m in copies) == [f"Offer {k}" for k in "ABCD"]
    assert all(m.message["X-Campaigns-Seed"] == "true" for m in copies)
