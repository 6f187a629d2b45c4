"""JOURNEY campaigns and the child-workflow contract on the real dev server (issue 6)."""

import asyncio
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError

from core.constants import JOURNEY_WORKFLOW
from core.journey_messages import JourneyInput, JourneyResult
from tests.conftest import Stack, StackFactory
from tests.factories import Audience, make_audience, make_templates
from tests.helpers import ledger

MAIL_CLIENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
PIXEL = re.compile(r'<img src="([^"]+/t/o/[^"]+)"')


async def journey_campaign(stack: Stack, email_t: str, segment_id: str | None = None) -> str:
    body: dict[str, Any] = {
        "tenantId": stack.tenant,
        "name": "Journey step",
        "type": "JOURNEY",
        "channels": ["EMAIL"],
        "emailTemplateId": email_t,
    }
    if segment_id:
        body["segmentId"] = segment_id
    r = await stack.call("POST", "/campaigns", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def start(stack: Stack, customer_id: str, steps: list[dict[str, Any]]) -> Any:
    inp = JourneyInput.model_validate(
        {"journey_id": "welcome", "tenant_id": stack.tenant, "customer_id": customer_id, "steps": steps}
    )
    return await stack.client.start_workflow(
        JOURNEY_WORKFLOW,
        inp,
        id=f"journey-{uuid.uuid4().hex[:8]}-{customer_id}",
        task_queue=stack.task_queue,
        result_type=JourneyResult,
    )


async def email_to(stack: Stack, address: str, timeout: float = 20) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for captured in stack.smtp.snapshot():
            if captured.to == address:
                return captured
        assert asyncio.get_running_loop().time() < deadline, address
        await asyncio.sleep(0.05)


async def move_sent_time_back(stack: Stack, customer_id: str, timeout: float = 20) -> None:
    """Move the customer's delivery an hour into the past, once the worker has recorded it as sent.

    The sink holds the message before the worker writes `sent_at` (the answer is recorded after the
    wire), so the row is awaited: shifting a NULL would leave the open looking like a prefetch."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with stack.engine.begin() as conn:
            moved = await conn.execute(
                text(
                    "UPDATE deliveries SET sent_at = sent_at - interval '1 hour'"
                    " WHERE customer_id = :c AND sent_at IS NOT NULL"
                ),
                {"c": customer_id},
            )
        if moved.rowcount:
            return
        assert asyncio.get_running_loop().time() < deadline, "the delivery was never recorded as sent"
        await asyncio.sleep(0.02)


async def until_waiting_for_event(handle: WorkflowHandle[Any, Any], timeout: float = 20) -> None:
    """Until the journey has begun its wait_for_event step: it has taken the instant it watches
    from and asked the event store once. An event posted earlier would predate the wait."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async for e in handle.fetch_history_events():
            if (
                e.HasField("activity_task_scheduled_event_attributes")
                and e.activity_task_scheduled_event_attributes.activity_type.name == "customer_event_seen"
            ):
                return
        assert asyncio.get_running_loop().time() < deadline, "the journey never began waiting"
        await asyncio.sleep(0.05)


async def test_rest_schedule_and_execute_of_a_journey_campaign_are_409(make_stack: StackFactory) -> None:
    stack = await make_stack()
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await journey_campaign(stack, email_t)
    for action, body in (("execute", None), ("schedule", {"scheduledAt": "2099-01-01T00:00:00Z"})):
        r = await stack.call("POST", f"/campaigns/{cid}/{action}", json=body)
        assert r.status_code == 409, r.text
        assert "JOURNEY" in r.json()["detail"]


async def test_journey_sends_waits_and_branches_on_the_childs_outcome(make_stack: StackFactory) -> None:
    stack = await make_stack()
    audience = await make_audience(stack.engine, stack.tenant, 3)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    welcome = await journey_campaign(stack, email_t)
    follow_up = await journey_campaign(stack, email_t)
    opener, ignorer, booker = audience.customers
    steps: list[dict[str, Any]] = [
        {"kind": "send", "campaign_id": welcome},
        {"kind": "wait", "seconds": 3},
        {"kind": "branch", "on": "opened", "then": [{"kind": "send", "campaign_id": follow_up}]},
    ]
    h_open = await start(stack, opener["id"], steps)
    h_ignore = await start(stack, ignorer["id"], steps)

    # The opener opens the welcome email during the wait, in a mail client, but a privacy proxy
    # fetched the ignorer's pixel (a machine's open: no signal for the branch). The sent time is
    # moved an hour back so the person's open is not mistaken for a prefetch (docs/engagement.md).
    message = await email_to(stack, opener["email"])
    pixel = PIXEL.search(message.part("html"))
    assert pixel, message.part("html")
    await move_sent_time_back(stack, opener["id"])
    r = await stack.api.get(pixel.group(1), headers={"User-Agent": MAIL_CLIENT})
    assert r.status_code == 200
    proxied = PIXEL.search((await email_to(stack, ignorer["email"])).part("html"))
    assert proxied
    r = await stack.api.get(proxied.group(1), headers={"User-Agent": GMAIL_PROXY})
    assert r.status_code == 200

    opened: JourneyResult = await h_open.result()
    ignored: JourneyResult = await h_ignore.result()
    assert opened.path == [
        f"send {welcome}: SENT",
        "wait 3s",
        "branch opened: then",
        f"send {follow_up}: SENT",
    ]
    assert ignored.path == [f"send {welcome}: SENT", "wait 3s", "branch opened: otherwise"]
    assert stack.smtp.counts({opener["email"], ignorer["email"]}) == {opener["email"]: 2, ignorer["email"]: 1}
    # Each child send is its own JOURNEY run in the campaign's ledger.
    assert opened.sends[0].counts.sent == 1 and opened.sends[0].target_count == 1
    rows = await ledger(stack, welcome)
    assert sorted(r["customerId"] for r in rows) == sorted([opener["id"], ignorer["id"]])
    stats = (await stack.call("GET", f"/campaigns/{welcome}/stats")).json()
    assert (stats["openedCount"], stats["humanOpenedCount"], stats["machineOpenedCount"]) == (2, 1, 1)

    # Waiting for an event that another service posts to POST /events.
    h_event = await start(
        stack,
        booker["id"],
        [
            {
                "kind": "wait_for_event",
                "event_type": "scl.booking.made",
                "timeout_seconds": 30,
                "poll_seconds": 0.5,
            },
            {"kind": "branch", "on": "event", "then": [{"kind": "send", "campaign_id": follow_up}]},
        ],
    )
    await until_waiting_for_event(h_event)
    r = await stack.call(
        "POST",
        "/events",
        json={
            "id": f"booking-{uuid.uuid4().hex[:6]}",
            "type": "scl.booking.made",
            "tenantId": stack.tenant,
            "customerId": booker["id"],
            "occurredAt": datetime.now(UTC).isoformat(),
        },
    )
    assert r.status_code == 202
    booked: JourneyResult = await h_event.result()
    assert booked.path == ["event scl.booking.made: came", "branch event: then", f"send {follow_up}: SENT"]
    assert stack.smtp.counts({booker["email"]}) == {booker["email"]: 1}


async def test_a_cancelled_journey_cancels_its_running_child(make_stack: StackFactory) -> None:
    stack = await make_stack(batch_size=100, send_concurrency=4)
    audience: Audience = await make_audience(stack.engine, stack.tenant, 3000)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    broadcast = await journey_campaign(stack, email_t, segment_id=audience.segment_id)
    step = {"kind": "send", "campaign_id": broadcast, "audience": "segment"}
    handle = await start(stack, audience.customers[0]["id"], [step])
    emails = audience.emails()
    for _ in range(600):
        if sum(stack.smtp.counts(emails).values()) >= 100:
            break
        await asyncio.sleep(0.05)
    assert 100 <= sum(stack.smtp.counts(emails).values()) < 3000, "the cancel must come mid-send"
    await handle.cancel()
    try:
        await handle.result()
        raise AssertionError("the journey should have ended CANCELLED")
    except WorkflowFailureError as err:
        assert isinstance(err.cause, CancelledError), f"failed, not cancelled: {err.cause!r}"
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    child = stack.client.get_workflow_handle(f"{handle.id}/s0")
    for _ in range(100):
        described = await child.describe()
        if described.status != WorkflowExecutionStatus.RUNNING:
            break
        await asyncio.sleep(0.1)
    assert described.status == WorkflowExecutionStatus.CANCELED
    settled = sum(stack.smtp.counts(emails).values())
    await asyncio.sleep(2)
    assert sum(stack.smtp.counts(emails).values()) == settled < 3000
    # Nothing doubled, nothing left claimed: every ledger row has its outcome.
    assert max(stack.smtp.counts(emails).values()) == 1
    rows = await ledger(stack, broadcast)
    assert {r["outcome"] for r in rows} <= {"SENT"}
    assert len(rows) == settled
