"""CampaignSendWorkflow: one send of a JOURNEY campaign, run as a journey's child.

The child contract (README "Journeys"):
- workflow type `CampaignSendWorkflow`, task queue `campaigns` (CAMPAIGNS_TASK_QUEUE);
- input `CampaignSendInput` {campaign_id, tenant_id, send_key, audience: {customer_ids: [...]} or
  {segment: true}}; the campaign must be a JOURNEY campaign of that tenant (else the child fails
  with a non-retryable `CampaignInvalid` error);
- result `CampaignSendResult` {run_id, target_count, counts: {sent, skipped, failed, bounced,
  unknown}, sent_customer_ids (the first 1,000)};
- `send_key` is the idempotency key of the send: a child started again with the same key (a
  retried parent, a reset) sends to nobody twice;
- cancellation (a cancelled parent cancels its children; or a cancel request to the child): no
  new message is started, the messages in flight finish and are recorded, then the child ends
  CANCELLED.
"""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from core.constants import CAMPAIGN_SEND_WORKFLOW, journey_run_id
    from core.journey_messages import (
        CampaignSendInput,
        CampaignSendResult,
        PrepareSendInput,
        PrepareSendResult,
        RunSummary,
        RunSummaryInput,
    )
    from core.messages import FinishRunInput, SendBatchInput, SendBatchResult
    from workflows.options import RETRY, SHORT
    from workflows.page_window import halt_page, start_page

EPOCH = 1


@workflow.defn(name=CAMPAIGN_SEND_WORKFLOW)
class CampaignSendWorkflow:
    @workflow.init
    def __init__(self, inp: CampaignSendInput) -> None:
        self._pages = 0
        self._target = 0

    @workflow.run
    async def run(self, inp: CampaignSendInput) -> CampaignSendResult:
        run_id = journey_run_id(inp.campaign_id, inp.send_key)
        prepared: PrepareSendResult = await workflow.execute_activity(
            "prepare_journey_send",
            PrepareSendInput(
                campaign_id=inp.campaign_id,
                tenant_id=inp.tenant_id,
                run_id=run_id,
                send_key=inp.send_key,
                audience=inp.audience,
            ),
            result_type=PrepareSendResult,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=RETRY,
        )
        self._target = prepared.target_count
        cursor: str | None = None
        while True:
            handle = start_page(
                SendBatchInput(
                    campaign_id=inp.campaign_id,
                    tenant_id=inp.tenant_id,
                    run_id=run_id,
                    after=cursor,
                    epoch=EPOCH,
                ),
                summary=None,
                cancellation=ActivityCancellationType.TRY_CANCEL,
            )
            try:
                # Shielded: a cancellation must not kill the page mid-message (that would leave
                # its in-flight messages UNKNOWN); the page is halted instead, below.
                result: SendBatchResult = await asyncio.shield(handle)
            except asyncio.CancelledError:
                await self._halt(run_id, handle)
                raise
            self._pages += 1
            if result.page_complete:
                cursor = result.next_cursor
            if result.exhausted:
                break
        await workflow.execute_activity(
            "finish_run", FinishRunInput(run_id=run_id), start_to_close_timeout=SHORT, retry_policy=RETRY
        )
        summary: RunSummary = await workflow.execute_activity(
            "run_summary",
            RunSummaryInput(run_id=run_id, campaign_id=inp.campaign_id),
            result_type=RunSummary,
            start_to_close_timeout=SHORT,
            retry_policy=RETRY,
        )
        return CampaignSendResult(
            run_id=run_id,
            target_count=prepared.target_count,
            counts=summary.counts,
            sent_customer_ids=summary.sent_customer_ids,
        )

    async def _halt(self, run_id: str, handle: "asyncio.Future[SendBatchResult]") -> None:
        """Stop the running page: no new message, in-flight ones recorded; then the run ends."""
        await halt_page(run_id, EPOCH, handle)
        try:
            await handle
        except (ActivityError, CancelledError, asyncio.CancelledError):
            pass
        await workflow.execute_activity(
            "finish_run", FinishRunInput(run_id=run_id), start_to_close_timeout=SHORT, retry_policy=RETRY
        )
