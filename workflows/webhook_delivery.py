"""WebhookEndpointWorkflow: the durable delivery loop of one outbound webhook endpoint.

One workflow per endpoint (id `webhook-endpoint-<endpoint id>`), never one per event: each
iteration runs the `deliver_webhooks` activity, which sends the endpoint's next batch of events
(or replays of dead letters) as one signed request and moves the endpoint's position only after a
2xx. A failing receiver makes the activity fail, and Temporal retries it with exponential backoff
(1 s, 2 s, 4 s, ... up to `retry_max_seconds`) for as long as it takes: the activity itself
dead-letters a batch once the endpoint has been failing for the dead-letter period, so the loop
never gives up and never skips an event silently.

When nothing is waiting the workflow sleeps until a `wake` signal (the API sends one on every
change to the endpoint and on replays) or the poll interval, so it does not spin; a disabled
endpoint sleeps until a signal. It continues as new every `iterations_per_run` iterations to keep
its history small, and ends when the endpoint is deleted.
"""

from datetime import timedelta
from enum import StrEnum
from functools import partial

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

WEBHOOK_WORKFLOW = "WebhookEndpointWorkflow"
DELIVER_ACTIVITY = "deliver_webhooks"


def webhook_workflow_id(endpoint_id: str) -> str:
    return f"webhook-endpoint-{endpoint_id}"


class WebhookEndpointInput(BaseModel):
    endpoint_id: str
    poll_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    timeout_seconds: float = 10.0
    iterations_per_run: int = 100


class DeliverInput(BaseModel):
    endpoint_id: str


class DeliveryState(StrEnum):
    MORE = "MORE"  # delivered (or dead-lettered) a batch; there may be more right away
    IDLE = "IDLE"  # nothing to send now
    DISABLED = "DISABLED"  # the endpoint is disabled: wait for a change
    GONE = "GONE"  # the endpoint was deleted: the workflow ends


class DeliveryResult(BaseModel):
    state: DeliveryState
    delivered: int = 0
    dead_lettered: int = 0


@workflow.defn(name=WEBHOOK_WORKFLOW)
class WebhookEndpointWorkflow:
    def __init__(self) -> None:
        self._wakes = 0

    @workflow.signal(name="wake")
    def wake(self) -> None:
        """Something changed (events, the endpoint, a replay): look now instead of at the next poll."""
        self._wakes += 1

    def _woken_since(self, seen: int) -> bool:
        return self._wakes != seen

    @workflow.run
    async def run(self, inp: WebhookEndpointInput) -> str:
        retry = RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=inp.retry_max_seconds),
            maximum_attempts=0,  # forever: dead-lettering is the activity's decision, by age
        )
        for _ in range(inp.iterations_per_run):
            seen = self._wakes
            result: DeliveryResult = await workflow.execute_activity(
                DELIVER_ACTIVITY,
                DeliverInput(endpoint_id=inp.endpoint_id),
                result_type=DeliveryResult,
                start_to_close_timeout=timedelta(seconds=inp.timeout_seconds + 5),
                retry_policy=retry,
            )
            if result.state == DeliveryState.GONE:
                return "deleted"
            if result.state == DeliveryState.MORE or self._wakes != seen:
                continue
            timeout = None if result.state == DeliveryState.DISABLED else timedelta(seconds=inp.poll_seconds)
            try:
                await workflow.wait_condition(partial(self._woken_since, seen), timeout=timeout)
            except TimeoutError:
                pass
        workflow.continue_as_new(inp)
