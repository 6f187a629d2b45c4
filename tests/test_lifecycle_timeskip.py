"""Issue 3 acceptance on the time-skipping server: the seed's status table, row by row.

Each transition goes through the REST API (so refusals are checked as HTTP 409 with the current
status), and days of sleeping pass in well under a second.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import WorkflowExecutionStatus

from core.constants import campaign_workflow_id
from core.enums import CampaignStatus
from core.messages import CampaignProgress
from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, received_emails, wait_for

ACTIONS = ("schedule", "execute", "pause", "resume", "cancel")
ALLOWED = {
    "DRAFT": {"schedule", "execute"},
    "SCHEDULED": {"schedule", "execute", "cancel"},
    "ACTIVE": {"pause", "cancel"},
    "PAUSED": {"resume", "cancel"},
    "COMPLETED": set(),
    "CANCELLED": set(),
}


def z(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def assert_fired_at(body: dict[str, Any], at: datetime) -> None:
    """The durable timer fired at the scheduled instant (within the timer's own latency)."""
    started = datetime.fromisoformat(body["startedAt"].replace("Z", "+00:00"))
    assert at <= started < at + timedelta(seconds=1), (body["startedAt"], at)


async def server_now(stack: Stack) -> datetime:
    return await stack.env.get_current_time()


async def setup(stack: Stack, n: int = 20, **extra: Any) -> tuple[str, Any]:
    audience = await make_audience(stack.engine, stack.tenant, n)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    return await create_campaign(stack, audience, email_t, None, **extra), audience


async def act(stack: Stack, cid: str, action: str, at: datetime | None = None) -> Any:
    body = None
    if action == "schedule":
        when = at if at is not None else await server_now(stack) + timedelta(days=30)
        body = {"scheduledAt": z(when)}
    return await stack.call("POST", f"/campaigns/{cid}/{action}", json=body)


async def assert_illegal_refused(stack: Stack, cid: str, status: str) -> None:
    """Every action the table does not allow from `status` is a 409 naming it, and changes nothing."""
    before = (await stack.call("GET", f"/campaigns/{cid}")).json()
    for action in ACTIONS:
        if action in ALLOWED[status]:
            continue
        r = await act(stack, cid, action)
        assert r.status_code == 409, (status, action, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["currentStatus"] == status, r.json()
        assert status in r.json()["detail"]
    after = (await stack.call("GET", f"/campaigns/{cid}")).json()
    assert after["status"] == before["status"] == status
    assert after["scheduledAt"] == before["scheduledAt"]


async def test_draft_scheduled_active_completed_at_the_right_instant(
    make_timeskip_stack: StackFactory,
) -> None:
    stack = await make_timeskip_stack()
    cid, audience = await setup(stack)
    await assert_illegal_refused(stack, cid, "DRAFT")

    at = (await server_now(stack) + timedelta(days=3)).replace(microsecond=0)
    r = await act(stack, cid, "schedule", at)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": cid, "status": "SCHEDULED", "scheduledAt": z(at), "targetCount": 20}
    assert (await stack.call("GET", f"/campaigns/{cid}")).json()["status"] == "SCHEDULED"
    await assert_illegal_refused(stack, cid, "SCHEDULED")

    await stack.env.sleep(timedelta(days=3) - timedelta(minutes=5))
    assert (await stack.call("GET", f"/campaigns/{cid}")).json()["status"] == "SCHEDULED"
    assert not received_emails(stack, audience)

    await stack.env.sleep(timedelta(minutes=10))
    body = await wait_for(stack, cid, "COMPLETED")
    assert_fired_at(body, at)
    assert sum(received_emails(stack, audience).values()) == 20
    await assert_illegal_refused(stack, cid, "COMPLETED")


async def test_reschedule_moves_the_timer_both_ways(make_timeskip_stack: StackFactory) -> None:
    stack = await make_timeskip_stack()
    cid, audience = await setup(stack)
    now = await server_now(stack)
    assert (await act(stack, cid, "schedule", now + timedelta(days=2))).status_code == 200
    later = (now + timedelta(days=5)).replace(microsecond=0)
    r = await act(stack, cid, "schedule", later)
    assert r.status_code == 200 and r.json()["scheduledAt"] == z(later)

    await stack.env.sleep(timedelta(days=2, hours=1))
    assert (await stack.call("GET", f"/campaigns/{cid}")).json()["status"] == "SCHEDULED"
    assert not received_emails(stack, audience)

    sooner = (await server_now(stack) + timedelta(hours=1)).replace(microsecond=0)
    assert (await act(stack, cid, "schedule", sooner)).status_code == 200
    await stack.env.sleep(timedelta(hours=2))
    body = await wait_for(stack, cid, "COMPLETED")
    assert_fired_at(body, sooner)


async def test_cancel_while_sleeping_wakes_and_sends_nothing(make_timeskip_stack: StackFactory) -> None:
    stack = await make_timeskip_stack()
    cid, audience = await setup(stack)
    assert (
        await act(stack, cid, "schedule", await server_now(stack) + timedelta(days=10))
    ).status_code == 200
    r = await act(stack, cid, "cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "CANCELLED" and r.json()["sentCount"] == 0 and r.json()["cancelledAt"]
    # The answer and the read model say CANCELLED as soon as the update is handled; what this test
    # is about is that the sleeping workflow wakes and closes. `describe` (unlike `result`) lets no
    # time skip: the workflow must close on the cancel alone, days before its timer.
    handle = stack.client.get_workflow_handle(campaign_workflow_id(cid), result_type=CampaignProgress)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while (described := await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        assert loop.time() < deadline, "the cancelled workflow is still sleeping"
        await asyncio.sleep(0.1)
    assert described.status == WorkflowExecutionStatus.COMPLETED
    assert (await handle.result()).status == CampaignStatus.CANCELLED
    await stack.env.sleep(timedelta(days=11))
    body = await wait_for(stack, cid, "CANCELLED")
    assert body["startedAt"] is None and not received_emails(stack, audience)
    await assert_illegal_refused(stack, cid, "CANCELLED")


async def test_execute_from_scheduled_starts_now(make_timeskip_stack: StackFactory) -> None:
    stack = await make_timeskip_stack()
    cid, audience = await setup(stack)
    assert (await act(stack, cid, "schedule", await server_now(stack) + timedelta(days=1))).status_code == 200
    r = await act(stack, cid, "execute")
    assert r.status_code == 200 and r.json()["status"] == "ACTIVE" and r.json()["targetCount"] == 20
    await wait_for(stack, cid, "COMPLETED")
    assert sum(received_emails(stack, audience).values()) == 20


async def test_active_and_paused_rows_with_a_stalled_provider(make_timeskip_stack: StackFactory) -> None:
    """A provider that refuses connections keeps the campaign ACTIVE (retrying), so the ACTIVE
    and PAUSED rows can be checked without racing the sender."""
    stack = await make_timeskip_stack(smtp_port=1)  # nothing listens on port 1
    cid, _ = await setup(stack)
    r = await act(stack, cid, "execute")
    assert r.status_code == 200, r.text
    await assert_illegal_refused(stack, cid, "ACTIVE")
    r = await act(stack, cid, "pause")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "PAUSED" and r.json()["sentCount"] == 0 and r.json()["pausedAt"]
    await assert_illegal_refused(stack, cid, "PAUSED")
    r = await act(stack, cid, "resume")
    assert r.status_code == 200 and r.json()["status"] == "ACTIVE" and r.json()["resumedAt"]
    r = await act(stack, cid, "pause")
    assert r.status_code == 200
    r = await act(stack, cid, "cancel")
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED"
    body = await wait_for(stack, cid, "CANCELLED")
    assert body["pausedAt"] and body["resumedAt"] and body["cancelledAt"]


async def test_schedule_validation(make_timeskip_stack: StackFactory) -> None:
    stack = await make_timeskip_stack()
    cid, _ = await setup(stack, timezone="Africa/Johannesburg")
    past = await server_now(stack) - timedelta(minutes=1)
    r = await act(stack, cid, "schedule", past)
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "$.scheduledAt"
    # No offset: read in the campaign's timezone (UTC+2, no DST).
    local = (await server_now(stack) + timedelta(days=2)).astimezone(UTC).replace(tzinfo=None, microsecond=0)
    r = await stack.call("POST", f"/campaigns/{cid}/schedule", json={"scheduledAt": local.isoformat()})
    assert r.status_code == 200, r.text
    assert r.json()["scheduledAt"] == z((local - timedelta(hours=2)).replace(tzinfo=UTC))
    for bad in ({}, {"scheduledAt": "tomorrow"}, {"scheduledAt": z(past), "extra": 1}):
        r = await stack.call("POST", f"/campaigns/{cid}/schedule", json=bad)
        assert r.status_code == 422, r.text
    assert (await stack.call("GET", f"/campaigns/{cid}")).json()["scheduledAt"] == r.json().get(
        "scheduledAt", z((local - timedelta(hours=2)).replace(tzinfo=UTC))
    )


async def test_presend_check_refuses_unsendable_campaigns(make_timeskip_stack: StackFactory) -> None:
    stack = await make_timeskip_stack()
    audience = await make_audience(stack.engine, stack.tenant, 5)
    r = await stack.call(
        "POST",
        "/campaigns",
        json={
            "tenantId": stack.tenant,
            "name": "No template",
            "segmentId": audience.segment_id,
            "channels": ["SMS"],
        },
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    for action in ("execute", "schedule"):
        r = await act(stack, cid, action)
        assert r.status_code == 422, r.text
        assert any(e["path"] == "$.smsTemplateId" for e in r.json()["errors"])
    assert (await stack.call("GET", f"/campaigns/{cid}")).json()["status"] == "DRAFT"
    r = await stack.call(
        "POST", "/campaigns", json={"tenantId": stack.tenant, "name": "No segment", "channels": ["SMS"]}
    )
    cid = r.json()["id"]
    r = await act(stack, cid, "execute")
    assert r.status_code == 422 and any(e["path"] == "$.segmentId" for e in r.json()["errors"])
