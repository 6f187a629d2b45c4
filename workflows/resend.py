"""ResendUnknownWorkflow: an operator's explicit resend of a campaign's UNKNOWN deliveries.

A separate short workflow (id `campaign-<id>-resend`), because the campaign's own workflow has
ended when its campaign is COMPLETED or CANCELLED; one resend per campaign runs at a time.

A resend page heartbeats like any page (since PATCH_HEARTBEAT), so a worker that dies mid-page is
noticed within HEARTBEAT and the page is retried then, instead of after its 15-minute timeout; the
retried attempt turns the dead one's claims back into UNKNOWN first (activities/resend.py).
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.messages import ResendInput, ResendResult
    from workflows.options import BATCH_TIMEOUT, HEARTBEAT

PATCH_HEARTBEAT = "resend-heartbeat"


@workflow.defn(name="ResendUnknownWorkflow")
class ResendUnknownWorkflow:
    @workflow.run
    async def run(self, inp: ResendInput) -> int:
        total = 0
        after = inp.after
        while True:
            result: ResendResult = await workflow.execute_activity(
                "resend_unknown",
                ResendInput(campaign_id=inp.campaign_id, tenant_id=inp.tenant_id, after=after),
                result_type=ResendResult,
                start_to_close_timeout=BATCH_TIMEOUT,
                heartbeat_timeout=HEARTBEAT if workflow.patched(PATCH_HEARTBEAT) else None,
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
            )
            total += result.resent
            after = result.next_after
            if result.done:
                return total
