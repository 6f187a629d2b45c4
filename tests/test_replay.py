"""Replay safety: recorded histories of CampaignWorkflow must replay against the current code.

Campaigns sleep for weeks; a change that reorders activities, timers or handlers would break the
ones already running. The JSON files in `tests/histories/` are real histories recorded from the
scenarios below. Re-record them (and keep the old ones!) only for an intentional, patched change:

    CAMPAIGNS_RECORD_HISTORIES=1 .venv/bin/pytest tests/test_replay.py -k record

`CAMPAIGNS_RECORD_HISTORIES=edit_discard,schedule_cancel` re-records only the histories named.
The recorder saves a history only once its run has closed, and the replay test refuses one that
does not end with a close event: a history cut short never replays the workflow's last commands.
"""

import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from core.constants import JOURNEY_WORKFLOW
from core.journey_messages import JourneyInput, JourneyResult
from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import auto_paused_by_refusals, create_campaign, wait_for
from workflows.campaign import CampaignWorkflow
from workflows.campaign_send import CampaignSendWorkflow
from workflows.journey import JourneyWorkflow
from workflows.resend import ResendUnknownWorkflow

HISTORIES = Path(__file__).with_name("histories")
RECORD = os.environ.get("CAMPAIGNS_RECORD_HISTORIES", "")
# How a run ends; a history whose last event is anything else was saved while the run was open.
CLOSE_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
}


# Workflow ids that the code depends on (a journey names its children after its own id).
WORKFLOW_IDS = HISTORIES / "workflow_ids.txt"


def stored_histories() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def workflow_ids() -> dict[str, str]:
    if not WORKFLOW_IDS.exists():
        return {}
    pairs = (line.split(" ", 1) for line in WORKFLOW_IDS.read_text().splitlines() if line.strip())
    return {name: wid for name, wid in pairs}


async def test_stored_histories_replay_against_current_code() -> None:
    paths = stored_histories()
    assert paths, "no recorded histories: run the recorder (see module docstring)"
    replayer = Replayer(
        workflows=[CampaignWorkflow, ResendUnknownWorkflow, CampaignSendWorkflow, JourneyWorkflow],
        data_converter=pydantic_data_converter,
    )
    ids = workflow_ids()
    for path in paths:
        history = WorkflowHistory.from_json(ids.get(path.stem, path.stem), path.read_text())
        last = EventType.Name(history.events[-1].event_type)
        assert history.events[-1].event_type in CLOSE_EVENTS, f"{path.name} ends open, at {last}"
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def _save(
    stack: Stack, campaign_id: str, name: str, suffix: str = "", *, workflow_id: str = "", run_id: str = ""
) -> None:
    """Save the run's history once it has closed (`RECORD` may name the histories to save)."""
    if RECORD != "1" and name not in RECORD.split(","):
        return
    handle = stack.client.get_workflow_handle(
        workflow_id or f"campaign-{campaign_id}{suffix}", run_id=run_id or None
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        assert loop.time() < deadline, f"{name}: the workflow never closed"
        await asyncio.sleep(0.1)
    history = await handle.fetch_history()
    assert history.events[-1].event_type in CLOSE_EVENTS, f"{name}: saved before its close"
    HISTORIES.mkdir(exist_ok=True)
    if workflow_id:
        ids = workflow_ids() | {name: workflow_id}
        WORKFLOW_IDS.write_text("".join(f"{k} {v}\n" for k, v in sorted(ids.items())))
    data = json.loads(history.to_json())
    (HISTORIES / f"{name}.json").write_text(json.dumps(data, indent=1))


async def _campaign(stack: Stack, n: int) -> str:
    prefix = f"m{len(stack.tenant)}{id(object()) % 100000}"
    audience = await make_audience(stack.engine, stack.tenant, n, no_phone_every=4, prefix=prefix)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    return await create_campaign(stack, audience, email_t, sms_t)


@pytest.mark.skipif(not RECORD, reason="recorder, run on purpose")
async def test_record_histories(make_stack: StackFactory) -> None:
    stack = await make_stack(batch_size=20)
    cid = await _campaign(stack, 50)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED")
    await _save(stack, cid, "execute_complete")

    cid = await _campaign(stack, 10)
    when = (await stack.env.get_current_time() + timedelta(seconds=2)).isoformat()
    assert (
        await stack.call("POST", f"/campaigns/{cid}/schedule", json={"scheduledAt": when})
    ).status_code == 200
    await wait_for(stack, cid, "COMPLETED")
    await _save(stack, cid, "schedule_fires")

    cid = await _campaign(stack, 10)
    later = (await stack.env.get_current_time() + timedelta(days=3)).isoformat()
    assert (
        await stack.call("POST", f"/campaigns/{cid}/schedule", json={"scheduledAt": later})
    ).status_code == 200
    assert (await stack.call("POST", f"/campaigns/{cid}/cancel")).status_code == 200
    await wait_for(stack, cid, "CANCELLED")
    await _save(stack, cid, "schedule_cancel")

    stack = await make_stack(batch_size=5, send_concurrency=2)
    cid = await _campaign(stack, 200)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await asyncio.sleep(0.5)
    assert (await stack.call("POST", f"/campaigns/{cid}/pause")).status_code == 200
    handle = stack.client.get_workflow_handle(f"campaign-{cid}")
    await handle.signal("pause")  # ignored signal stays in history
    assert (await stack.call("POST", f"/campaigns/{cid}/resume")).status_code == 200
    await wait_for(stack, cid, "COMPLETED", timeout=180)
    await _save(stack, cid, "pause_resume_complete")

    stack = await make_stack(batch_size=10, batches_per_run=2)
    cid = await _campaign(stack, 45)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED")
    await _save(stack, cid, "continued_as_new_last_run")

    stack = await make_stack()
    cid = await _campaign(stack, 3)
    r = await stack.call("PATCH", f"/campaigns/{cid}", json={"name": "Renamed", "channels": ["EMAIL"]})
    assert r.status_code == 200, r.text
    assert (await stack.call("DELETE", f"/campaigns/{cid}")).status_code == 204
    await _save(stack, cid, "edit_discard")


@pytest.mark.skipif(not RECORD, reason="recorder, run on purpose")
async def test_record_resend_history(make_stack: StackFactory) -> None:
    stack = await make_stack(batch_size=5)
    audience = await make_audience(stack.engine, stack.tenant, 12)
    _, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, None, sms_t)
    flaky = {c["phone"] for c in audience.customers[:7]}
    stack.sms.unavailable_numbers |= flaky
    try:
        assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
        await wait_for(stack, cid, "COMPLETED")
    finally:
        stack.sms.unavailable_numbers -= flaky
    r = await stack.call("POST", f"/campaigns/{cid}/resend-unknown")
    assert r.status_code == 202, r.text
    await stack.client.get_workflow_handle(r.json()["workflowId"]).result()
    # Recorded as resend_unknown.json before PATCH_HEARTBEAT (workflows/resend.py), kept as it was.
    await _save(stack, cid, "resend_unknown_heartbeat", suffix="-resend")


@pytest.mark.skipif(not RECORD, reason="recorder, run on purpose")
async def test_record_recurring_history(make_timeskip_stack: StackFactory) -> None:
    """One whole RECURRING run: sleep, snapshot, send, close, continue-as-new (first run's history)."""
    stack = await make_timeskip_stack()
    audience = await make_audience(stack.engine, stack.tenant, 3)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    schedule = {"frequency": "daily", "time": "08:00", "timezone": "Europe/London", "maxRuns": 2}
    cid = await create_campaign(stack, audience, email_t, None, type="RECURRING", schedule=schedule)
    handle = stack.client.get_workflow_handle(f"campaign-{cid}")
    first_run = (await handle.describe()).run_id
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await stack.env.sleep(timedelta(days=3))
    await wait_for(stack, cid, "COMPLETED")
    await _save(stack, cid, "recurring_first_run", run_id=first_run)
    await _save(stack, cid, "recurring_last_run")


@pytest.mark.skipif(not RECORD, reason="recorder, run on purpose")
async def test_record_triggered_and_journey_histories(make_stack: StackFactory) -> None:
    stack = await make_stack(trigger_poll_seconds=1.0)
    audience = await make_audience(stack.engine, stack.tenant, 3)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    r = await stack.call(
        "POST",
        "/campaigns",
        json={
            "tenantId": stack.tenant,
            "name": "On upgrade",
            "type": "TRIGGERED",
            "channels": ["EMAIL"],
            "emailTemplateId": email_t,
            "triggerEvent": "tier.changed",
        },
    )
    cid = r.json()["id"]
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    for i, customer in enumerate(audience.customers):
        event = {
            "id": f"e{i}",
            "type": "tier.changed",
            "tenantId": stack.tenant,
            "customerId": customer["id"],
            "occurredAt": "2026-11-26T10:00:00Z",
        }
        assert (await stack.call("POST", "/events", json=event)).status_code == 202
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while sum(stack.smtp.counts(audience.emails()).values()) < len(audience.customers):
        assert loop.time() < deadline, "the events were never sent"
        await asyncio.sleep(0.05)
    assert (await stack.call("POST", f"/campaigns/{cid}/pause")).status_code == 200
    assert (await stack.call("POST", f"/campaigns/{cid}/resume")).status_code == 200
    assert (await stack.call("POST", f"/campaigns/{cid}/cancel")).status_code == 200
    await wait_for(stack, cid, "CANCELLED")
    await _save(stack, cid, "triggered_events_pause_cancel")

    r = await stack.call(
        "POST",
        "/campaigns",
        json={
            "tenantId": stack.tenant,
            "name": "Step",
            "type": "JOURNEY",
            "channels": ["EMAIL"],
            "emailTemplateId": email_t,
        },
    )
    journey_campaign = r.json()["id"]
    inp = JourneyInput.model_validate(
        {
            "journey_id": "j",
            "tenant_id": stack.tenant,
            "customer_id": audience.customers[0]["id"],
            "steps": [
                {"kind": "send", "campaign_id": journey_campaign},
                {"kind": "wait", "seconds": 1},
                {"kind": "wait_for_event", "event_type": "never", "timeout_seconds": 1, "poll_seconds": 0.5},
                {
                    "kind": "branch",
                    "on": "opened",
                    "otherwise": [{"kind": "send", "campaign_id": journey_campaign}],
                },
            ],
        }
    )
    handle = await stack.client.start_workflow(
        JOURNEY_WORKFLOW,
        inp,
        id=f"journey-record-{cid}",
        task_queue=stack.task_queue,
        result_type=JourneyResult,
    )
    await handle.result()
    await _save(stack, cid, "journey_send_wait_branch", workflow_id=handle.id)
    await _save(stack, cid, "campaign_send_child", workflow_id=f"{handle.id}/s0")


@pytest.mark.skipif(not RECORD, reason="recorder, run on purpose")
async def test_record_page_window_history(make_stack: StackFactory) -> None:
    """The page window (several pages in flight), paused and resumed, over continue-as-new."""
    stack = await make_stack(
        batch_size=10, large_batch_size=20, send_concurrency=2, pages_in_flight=3, batches_per_run=12
    )
    cid = await _campaign(stack, 200)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await asyncio.sleep(0.3)
    assert (await stack.call("POST", f"/campaigns/{cid}/pause")).status_code == 200
    assert (await stack.call("POST", f"/campaigns/{cid}/resume")).status_code == 200
    await wait_for(stack, cid, "COMPLETED", timeout=180)
    handle = stack.client.get_workflow_handle(f"campaign-{cid}")
    first_run = [e async for e in stack.client.list_workflows(f"WorkflowId = 'campaign-{cid}'")][-1].run_id
    # Recorded again after each patch; earlier recordings stay (page_window_*_run.json: before
    # the final ledger recount; page_window_recount_*: before pages were sized by the run, here
    # 200 / (3 in flight x 4 rounds) = 16 recipients each).
    await _save(stack, cid, "page_window_sized_first_run", run_id=first_run)
    await _save(stack, cid, "page_window_sized_last_run")
    assert handle is not None


@pytest.mark.skipif(not RECORD, reason="recorder, run on purpose")
async def test_record_sending_policy_history(make_stack: StackFactory) -> None:
    """Sending policies: SMS held by quiet hours until the next minute, then swept; email sent at
    once (up to two minutes of real time)."""
    stack = await make_stack(batch_size=10)
    now = await stack.env.get_current_time()
    window = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(minutes=1)).strftime("%H:%M"),
    }
    audience = await make_audience(stack.engine, stack.tenant, 20)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t, policy={"quietHours": {"SMS": window}})
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED", timeout=180)
    await _save(stack, cid, "quiet_hours_sweep")


@pytest.mark.skipif(not RECORD, reason="recorder, run on purpose")
async def test_record_page_time_budget_history(make_stack: StackFactory) -> None:
    """A throttled page stopped by its time budget, its refusals judged before it ends: the
    campaign auto-pauses mid-page (PATCH_INCOMPLETE_ANSWERS), then is cancelled."""
    stack = await make_stack(
        rate_limits={"email": {"perSecond": 10}}, batch_size=30, pages_in_flight=1, page_time_budget=0.5
    )
    _, cid, _ = await auto_paused_by_refusals(stack, 30, {"failureRate": 0.5, "window": 10, "minMessages": 3})
    assert (await stack.call("POST", f"/campaigns/{cid}/cancel")).status_code == 200
    await wait_for(stack, cid, "CANCELLED")
    await _save(stack, cid, "page_budget_auto_pause")


@pytest.mark.skipif(not RECORD, reason="recorder, run on purpose")
async def test_record_snapshot_overlap_history(make_stack: StackFactory) -> None:
    """Pages sent while the snapshot is taken (PATCH_SNAPSHOT_OVERLAP), paused mid-snapshot and
    resumed: the chunk in flight is taken in, then the snapshot and the pages go on."""
    stack = await make_stack(snapshot_chunk_size=100, batch_size=20, pages_in_flight=2)
    cid = await _campaign(stack, 400)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    assert (await stack.call("POST", f"/campaigns/{cid}/pause")).status_code == 200
    await wait_for(stack, cid, "PAUSED")
    assert (await stack.call("POST", f"/campaigns/{cid}/resume")).status_code == 200
    await wait_for(stack, cid, "COMPLETED", timeout=120)
    await _save(stack, cid, "snapshot_overlap_paused")
