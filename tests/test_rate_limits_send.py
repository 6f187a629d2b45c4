"""A rate-limited provider account through the whole send path: API, workflow, worker, SMTP sink.

The messages wait for their tokens, so the campaign takes as long as its limit says, and none is
dropped, failed or sent twice for having waited.
"""

import asyncio
import time
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from db.rate_limits import granted_on
from tests.conftest import StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, ledger, received_emails, received_sms, wait_for

RATE = 20.0
RECIPIENTS = 60


async def test_a_campaign_on_a_rate_limited_account_sends_at_the_limit_and_every_message_once(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(rate_limits={"email": {"perSecond": RATE}})
    audience = await make_audience(stack.engine, stack.tenant, RECIPIENTS)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED", timeout=60)

    rows = await ledger(stack, cid)
    assert len(rows) == RECIPIENTS and {r["outcome"] for r in rows} == {"SENT"}
    assert received_emails(stack, audience) == {e: 1 for e in audience.emails()}
    sent_at = sorted(datetime.fromisoformat(r["sentAt"]) for r in rows)
    spread = (sent_at[-1] - sent_at[0]).total_seconds()
    # After the account's opening burst (a quarter second of its rate) every message waited for
    # its token: 60 messages at 20/s take at least (60 - 5 - 1) / 20 = 2.7 s.
    assert spread >= 2.5, spread
    assert spread <= RECIPIENTS / RATE * 2, spread


async def test_a_used_up_day_holds_messages_without_failing_them_and_pause_still_works(
    make_stack: StackFactory, engine: AsyncEngine
) -> None:
    """The `sms` account's day has room for 4 more messages: 4 of 10 go, the other 6 wait (never
    FAILED or SKIPPED for it), and a pause still stops the waiting page at once."""
    async with engine.connect() as conn:
        day, granted = await granted_on(conn, "sms")
    used_today = granted if day == datetime.now(UTC).date() else 0
    stack = await make_stack(rate_limits={"sms": {"perDay": used_today + 4}})
    audience = await make_audience(stack.engine, stack.tenant, 10)
    _, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, None, sms_t)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    for _ in range(300):
        if sum(received_sms(stack, audience).values()) >= 4:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)  # long enough for a fifth message, if one could go
    assert sum(received_sms(stack, audience).values()) == 4
    assert (await stack.call("GET", f"/campaigns/{cid}")).json()["status"] == "ACTIVE"

    asked = time.monotonic()
    r = await stack.call("POST", f"/campaigns/{cid}/pause")
    assert r.status_code == 200 and r.json()["status"] == "PAUSED", r.text
    assert time.monotonic() - asked < 10
    rows = await ledger(stack, cid)
    assert sorted(r["outcome"] for r in rows) == ["SENT"] * 4  # the waiting ones were released
    assert set(received_sms(stack, audience).values()) == {1}
    assert sum(received_sms(stack, audience).values()) == 4


async def test_a_throttled_campaign_shows_when_it_will_finish(make_stack: StackFactory) -> None:
    """At 10/s, 60 recipients in pages of 10: after the first page the campaign (GET and the
    workflow's progress) expects to finish about 5 s later, at the tenant's current share."""
    stack = await make_stack(rate_limits={"email": {"perSecond": 10}}, batch_size=10, pages_in_flight=1)
    audience = await make_audience(stack.engine, stack.tenant, RECIPIENTS)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None)
    estimate = (await stack.call("GET", f"/campaigns/{cid}/estimate")).json()
    assert estimate["expectedDurationSeconds"] == RECIPIENTS / 10  # at the account's 10/s
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    seen: datetime | None = None
    for _ in range(200):
        body = (await stack.call("GET", f"/campaigns/{cid}")).json()
        if body["expectedFinishAt"]:
            seen = datetime.fromisoformat(body["expectedFinishAt"].replace("Z", "+00:00"))
            break
        await asyncio.sleep(0.05)
    assert seen is not None, body
    ahead = (seen - datetime.now(UTC)).total_seconds()
    assert 1.0 <= ahead <= 8.0, ahead  # 40-50 recipients left at about 10/s
    progress = await stack.client.get_workflow_handle(f"campaign-{cid}").query("progress")
    assert progress["expected_finish_at"] is not None
    done = await wait_for(stack, cid, "COMPLETED", timeout=60)
    assert done["expectedFinishAt"] is None  # shown while ACTIVE only
