"""What the outbox triggers cost the send path (opt-in: `CAMPAIGNS_WEBHOOKS_COST=1`).

Sends 2,000 messages (1,000 recipients, email and SMS) four ways, alternating, and prints the time
from execute to COMPLETED of each: the triggers disabled; on, with no endpoint anywhere; on, with
another tenant's endpoint; on, for a tenant with an endpoint (its outbox rows written; no delivery
workflow runs, so only the send path is measured). A measurement on a shared machine, not an
assertion: docs/outbound-webhooks.md quotes the figures.
"""

import os
import statistics
import time

import pytest
from sqlalchemy import text

from core.secrets import seal
from core.webhook_signing import new_secret
from db.webhook_endpoints import NewEndpoint, delete_endpoint, insert_endpoint
from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, wait_for

pytestmark = pytest.mark.skipif(
    os.environ.get("CAMPAIGNS_WEBHOOKS_COST") != "1", reason="a measurement: CAMPAIGNS_WEBHOOKS_COST=1"
)
TRIGGERS = (
    ("interactions", "webhook_outbox_interactions"),
    ("suppressions", "webhook_outbox_complaints"),
    ("campaigns", "webhook_outbox_campaigns"),
)


async def set_triggers(stack: Stack, on: bool) -> None:
    async with stack.engine.begin() as conn:
        for table, trigger in TRIGGERS:
            await conn.execute(text(f"ALTER TABLE {table} {'ENABLE' if on else 'DISABLE'} TRIGGER {trigger}"))


async def timed_send(stack: Stack) -> float:
    audience = await make_audience(stack.engine, stack.tenant, 1000)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t)
    started = time.perf_counter()
    r = await stack.call("POST", f"/campaigns/{cid}/execute")
    assert r.status_code == 200, r.text
    await wait_for(stack, cid, "COMPLETED", timeout=300)
    return time.perf_counter() - started


async def set_endpoint(stack: Stack, endpoint: NewEndpoint, present: bool) -> None:
    async with stack.engine.begin() as conn:
        await delete_endpoint(conn, endpoint.id)
        if present:
            await insert_endpoint(conn, endpoint)


async def outbox_rows(stack: Stack) -> int:
    async with stack.engine.connect() as conn:
        query = text("SELECT count(*) FROM webhook_outbox WHERE tenant_id = :t")
        return int((await conn.execute(query, {"t": stack.tenant})).scalar_one())


async def test_trigger_cost_on_a_2000_message_send(make_stack: StackFactory) -> None:
    plain = await make_stack()
    hooked = await make_stack()
    endpoint = NewEndpoint(
        id=f"whep_cost_{hooked.tenant[-8:]}",
        tenant_id=hooked.tenant,
        url="https://example.com/hook",
        event_types=["message.sent"],
        description=None,
        enabled=True,
        sealed_secret=seal(new_secret()),
        created_by="cost",
    )
    cases = ("off", "on, no endpoint", "on, another tenant's endpoint", "on, the tenant's endpoint")
    times: dict[str, list[float]] = {case: [] for case in cases}
    for _ in range(2):
        await set_endpoint(hooked, endpoint, False)
        await set_triggers(plain, False)
        times[cases[0]].append(await timed_send(plain))
        await set_triggers(plain, True)
        times[cases[1]].append(await timed_send(plain))
        await set_endpoint(hooked, endpoint, True)
        times[cases[2]].append(await timed_send(plain))
        times[cases[3]].append(await timed_send(hooked))
    for name, values in times.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"2,000-message send, triggers {name}: {runs} s (median {statistics.median(values):.2f} s)")
    rows, other = await outbox_rows(hooked), await outbox_rows(plain)
    print(f"outbox rows written: {rows} for the tenant with an endpoint, {other} for the other")
    assert rows >= 4000 and other == 0
