"""JourneyWorkflow: the reference journey, composing campaign sends as child workflows
(README "Journeys: the child-workflow contract").

One journey instance walks one customer through its steps:
- `send`: start a `CampaignSendWorkflow` child for a JOURNEY campaign and this customer, and wait
  for its result (the send key is "<journey workflow id>/<step path>", so a replayed or reset
  journey never sends a step twice);
- `wait`: a durable timer;
- `wait_for_event`: wait until the customer's event of a type arrives (through `POST /events`,
  checked every `poll_seconds`, or pushed at once with the `event` signal), or the timeout passes;
- `branch`: on `opened`/`clicked` (of the last send) or `event` (the last awaited event came), run
  `then` or `otherwise`.
Cancelling the journey cancels its running child, which stops sending and ends CANCELLED.
Other services' journeys can start `CampaignSendWorkflow` children the same way.
"""

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from core.constants import CAMPAIGN_SEND_WORKFLOW, JOURNEY_WORKFLOW
    from core.journey_messages import (
        BranchStep,
        CampaignSendInput,
        CampaignSendResult,
        Engagement,
        EngagementInput,
        EventSeenInput,
        JourneyAudience,
        JourneyInput,
        JourneyResult,
        JourneyStep,
        SendStep,
        WaitForEventStep,
        WaitStep,
    )
    from workflows.options import RETRY, SHORT


@workflow.defn(name=JOURNEY_WORKFLOW)
class JourneyWorkflow:
    @workflow.init
    def __init__(self, inp: JourneyInput) -> None:
        self._inp = inp
        self._path: list[str] = []
        self._sends: list[CampaignSendResult] = []
        self._last_send: tuple[str, str] | None = None  # (campaign id, run id)
        self._event_came = False
        self._pushed: set[str] = set()

    @workflow.run
    async def run(self, inp: JourneyInput) -> JourneyResult:
        await self._steps(inp.steps, "s")
        return JourneyResult(path=self._path, sends=self._sends)

    @workflow.signal(name="event")
    def event(self, event_type: str) -> None:
        """Push an awaited event at once (instead of waiting for the next look at the store)."""
        self._pushed.add(event_type)

    @workflow.query(name="path")
    def path(self) -> list[str]:
        return self._path

    async def _steps(self, steps: list[JourneyStep], where: str) -> None:
        for index, step in enumerate(steps):
            at = f"{where}{index}"
            if isinstance(step, SendStep):
                await self._send(step, at)
            elif isinstance(step, WaitStep):
                await workflow.sleep(timedelta(seconds=step.seconds))
                self._path.append(f"wait {step.seconds:g}s")
            elif isinstance(step, WaitForEventStep):
                await self._wait_for_event(step)
            elif isinstance(step, BranchStep):
                taken = await self._decide(step)
                self._path.append(f"branch {step.on}: {'then' if taken else 'otherwise'}")
                await self._steps(step.then if taken else step.otherwise, f"{at}{'t' if taken else 'o'}")

    async def _send(self, step: SendStep, at: str) -> None:
        result: CampaignSendResult = await workflow.execute_child_workflow(
            CAMPAIGN_SEND_WORKFLOW,
            CampaignSendInput(
                campaign_id=step.campaign_id,
                tenant_id=self._inp.tenant_id,
                send_key=f"{workflow.info().workflow_id}/{at}",
                audience=(
                    JourneyAudience(segment=True)
                    if step.audience == "segment"
                    else JourneyAudience(customer_ids=[self._inp.customer_id])
                ),
            ),
            id=f"{workflow.info().workflow_id}/{at}",
            result_type=CampaignSendResult,
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
        )
        self._sends.append(result)
        self._last_send = (step.campaign_id, result.run_id)
        outcome = "SENT" if self._inp.customer_id in result.sent_customer_ids else "NOT_SENT"
        self._path.append(f"send {step.campaign_id}: {outcome}")

    async def _wait_for_event(self, step: WaitForEventStep) -> None:
        since = workflow.now()
        deadline = since + timedelta(seconds=step.timeout_seconds)
        self._event_came = False
        while True:
            if step.event_type in self._pushed or await self._event_seen(step.event_type, since):
                self._event_came = True
                break
            remaining = (deadline - workflow.now()).total_seconds()
            if remaining <= 0:
                break
            try:
                await workflow.wait_condition(
                    lambda: step.event_type in self._pushed,
                    timeout=timedelta(seconds=min(step.poll_seconds, remaining)),
                )
            except TimeoutError:
                pass
        self._pushed.discard(step.event_type)
        self._path.append(f"event {step.event_type}: {'came' if self._event_came else 'timed out'}")

    async def _event_seen(self, event_type: str, since: datetime) -> bool:
        seen: bool = await workflow.execute_activity(
            "customer_event_seen",
            EventSeenInput(
                tenant_id=self._inp.tenant_id,
                customer_id=self._inp.customer_id,
                event_type=event_type,
                since=since,
            ),
            result_type=bool,
            start_to_close_timeout=SHORT,
            retry_policy=RETRY,
        )
        return seen

    async def _decide(self, step: BranchStep) -> bool:
        if step.on == "event":
            return self._event_came
        if self._last_send is None:
            return False
        campaign_id, run_id = self._last_send
        engagement: Engagement = await workflow.execute_activity(
            "customer_engagement",
            EngagementInput(campaign_id=campaign_id, customer_id=self._inp.customer_id, run_id=run_id),
            result_type=Engagement,
            start_to_close_timeout=SHORT,
            retry_policy=RETRY,
        )
        return engagement.opened if step.on == "opened" else engagement.clicked
