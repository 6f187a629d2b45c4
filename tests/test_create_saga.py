"""`POST /campaigns` when something fails between the workflow's start and the answer: after a retry
with the same Idempotency-Key (or the reconcile pass) there is exactly one campaign row and one
workflow, or neither (api.campaign_create; docs/data-access.md "Creating a campaign").

The failures are injected around the real start (the workflow really starts on the dev server);
the outcomes are read from Postgres and from Temporal's own list of workflows.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.service import RPCError, RPCStatusCode

from api.campaign_create import reconcile_unconfirmed
from api.lifecycle import CampaignControl
from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates


class Killed(BaseException):
    """The API process dying mid-request: no handler of the app catches it, nothing answers."""


Start = Callable[..., Awaitable[None]]
REAL_START: Start = CampaignControl.start


def fail_first_start(
    monkeypatch: pytest.MonkeyPatch, failure: BaseException, *, before: bool = False
) -> None:
    """The first start raises `failure`: after the real start (its answer lost), or `before` it."""
    calls: list[str] = []

    async def start(self: CampaignControl, campaign_id: str, *args: Any, **kw: Any) -> None:
        calls.append(campaign_id)
        if before and len(calls) == 1:
            raise failure
        await REAL_START(self, campaign_id, *args, **kw)
        if len(calls) == 1:
            raise failure

    monkeypatch.setattr(CampaignControl, "start", start)


async def crashes(request: Awaitable[Any]) -> None:
    """The request ends with the process's death: no answer, the Killed exception comes out."""
    with pytest.raises(Killed):
        await request


async def campaign_rows(stack: Stack) -> list[tuple[str, int]]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, state_version FROM campaigns WHERE tenant_id = :t ORDER BY created_at"),
            {"t": stack.tenant},
        )
        return [(r[0], r[1]) for r in rows]


async def workflows_of(stack: Stack, expected: int) -> list[str]:
    """The ids of the tenant's workflows in Temporal's list (which lags a moment behind the
    starts): polled until `expected` are listed, then once more so a late extra one shows."""
    query = f"TenantId = '{stack.tenant}'"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        ids = sorted([w.id async for w in stack.client.list_workflows(query)])
        if len(ids) >= expected or loop.time() > deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    return sorted([w.id async for w in stack.client.list_workflows(query)])


def body_of(stack: Stack, **extra: Any) -> dict[str, Any]:
    return {"tenantId": stack.tenant, "name": "Retried", "channels": ["EMAIL"], **extra}


@pytest.mark.parametrize("before", [False, True], ids=["after-the-start", "before-the-start"])
async def test_a_crash_around_the_start_is_finished_by_the_retry(
    make_stack: StackFactory, monkeypatch: pytest.MonkeyPatch, before: bool
) -> None:
    """Killed right after the workflow started, or between the row and the start: the retry
    answers with the campaign, which then has exactly one workflow."""
    # No worker: the workflow never confirms the row, so the retry starts it again (and joins it).
    stack = await make_stack(worker=False)
    headers = {**stack.headers(), "Idempotency-Key": "crash-around-start"}
    fail_first_start(monkeypatch, Killed(), before=before)
    await crashes(stack.api.post("/campaigns", json=body_of(stack), headers=headers))
    [(campaign_id, version)] = await campaign_rows(stack)
    assert version == 0  # written, never confirmed by its workflow

    retry = await stack.api.post("/campaigns", json=body_of(stack), headers=headers)
    assert retry.status_code in (200, 201), retry.text
    assert retry.json()["id"] == campaign_id and retry.json()["status"] == "DRAFT"
    assert [row[0] for row in await campaign_rows(stack)] == [campaign_id]
    assert await workflows_of(stack, 1) == [f"campaign-{campaign_id}"]
    # The one workflow is the campaign's, started once: the retry joined it.
    history = await stack.client.get_workflow_handle(f"campaign-{campaign_id}").fetch_history()
    assert (
        history.events[0].workflow_execution_started_event_attributes.workflow_type.name == "CampaignWorkflow"
    )


async def test_a_crash_before_the_schedule_is_finished_by_the_retry(
    make_stack: StackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Create with `scheduledAt`: the retry also does the part the crash cut off."""
    stack = await make_stack()
    audience = await make_audience(stack.engine, stack.tenant, 3)
    email_t, _sms_t = await make_templates(stack.engine, stack.tenant)
    headers = {**stack.headers(), "Idempotency-Key": "crash-before-schedule"}
    body = body_of(
        stack, segmentId=audience.segment_id, emailTemplateId=email_t, scheduledAt="2099-01-01T09:00:00Z"
    )
    fail_first_start(monkeypatch, Killed())
    await crashes(stack.api.post("/campaigns", json=body, headers=headers))
    [(campaign_id, _)] = await campaign_rows(stack)

    retry = await stack.api.post("/campaigns", json=body, headers=headers)
    assert retry.status_code in (200, 201), retry.text
    assert retry.json()["id"] == campaign_id
    got = (await stack.call("GET", f"/campaigns/{campaign_id}")).json()
    assert got["status"] == "SCHEDULED" and got["scheduledAt"] == "2099-01-01T09:00:00Z"
    assert [row[0] for row in await campaign_rows(stack)] == [campaign_id]
    assert await workflows_of(stack, 1) == [f"campaign-{campaign_id}"]
    cancel = await stack.call("POST", f"/campaigns/{campaign_id}/cancel")
    assert cancel.status_code == 200, cancel.text


async def test_a_lost_answer_of_the_start_is_not_a_failed_create(
    make_stack: StackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start went through but its answer did not come: the create asks, and answers 201."""
    stack = await make_stack(worker=False)
    fail_first_start(monkeypatch, RPCError("deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b""))
    r = await stack.call("POST", "/campaigns", json=body_of(stack))
    assert r.status_code == 201, r.text
    assert [row[0] for row in await campaign_rows(stack)] == [r.json()["id"]]
    assert await workflows_of(stack, 1) == [f"campaign-{r.json()['id']}"]


async def test_a_start_that_never_happened_is_removed(
    make_stack: StackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = await make_stack(worker=False)
    control = CampaignControl(stack.client, stack.task_queue)
    headers = {**stack.headers(), "Idempotency-Key": "never-started"}
    unavailable = RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")

    # Temporal refuses the start, and says the workflow does not exist: nothing is left behind.
    fail_first_start(monkeypatch, unavailable, before=True)
    r = await stack.api.post("/campaigns", json=body_of(stack), headers=headers)
    assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json")
    assert await campaign_rows(stack) == []

    # Temporal cannot even say: the row stays, unconfirmed, for the reconcile pass...
    fail_first_start(monkeypatch, unavailable, before=True)

    async def cannot_tell(self: CampaignControl, campaign_id: str) -> bool | None:
        return None

    with monkeypatch.context() as m:
        m.setattr(CampaignControl, "workflow_exists", cannot_tell)
        r = await stack.api.post("/campaigns", json=body_of(stack), headers=headers)
    assert r.status_code == 503, r.text
    [(orphan, version)] = await campaign_rows(stack)
    assert version == 0
    # ...which leaves a create younger than its grace alone, and removes an older one.
    assert await reconcile_unconfirmed(stack.engine, control, tenant_id=stack.tenant) == 0
    assert await reconcile_unconfirmed(stack.engine, control, timedelta(0), stack.tenant) == 1
    assert await campaign_rows(stack) == []

    # The retry with the key then creates the campaign once, with its one workflow.
    monkeypatch.setattr(CampaignControl, "start", REAL_START)
    r = await stack.api.post("/campaigns", json=body_of(stack), headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["id"] != orphan
    assert [row[0] for row in await campaign_rows(stack)] == [r.json()["id"]]
    assert await workflows_of(stack, 1) == [f"campaign-{r.json()['id']}"]
    # The reconcile pass keeps a row whose workflow exists, though it has not confirmed it yet
    # (no worker runs it here).
    assert await reconcile_unconfirmed(stack.engine, control, timedelta(0), stack.tenant) == 0
    assert len(await campaign_rows(stack)) == 1
