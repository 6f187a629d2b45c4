"""Worker interceptor: campaign ids on every log line, and activity retry and batch metrics.

Activities: the ids come from `activity.info()` (workflow and run id) and from the activity's
input or a header (campaign and tenant id); they are bound for the whole attempt, so every log
line of a send page carries them without the page code knowing. Attempts after the first count as
retries; page activities' durations are the batch durations.

Workflows: the campaign and tenant id of the workflow's input are bound while its code runs (for
`workflow.logger` lines) and sent in a header with each activity it starts, so activities whose
input names no tenant still log it. Temporal runs the handler of a signal or update that came with
the workflow's start before the workflow's main method, which is where the input is read, so until
then the ids come from the start's memo (api/lifecycle.py writes campaignId and tenantId there).
This only sets a context variable and a header: no I/O, no effect on the workflow's commands, so
it is replay-safe.
"""

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadConverter
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    HandleQueryInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from core import logs, metrics

log = logging.getLogger("campaigns.activity")

HEADER = "campaigns-log-context"


def ids_of_args(args: Sequence[Any]) -> dict[str, str]:
    """campaignId/tenantId from an input object with `campaign_id`/`tenant_id` (ours all have)."""
    if not args:
        return {}
    first = args[0]
    ids = {"campaignId": getattr(first, "campaign_id", None), "tenantId": getattr(first, "tenant_id", None)}
    return {k: v for k, v in ids.items() if isinstance(v, str) and v}


def ids_of_memo() -> dict[str, str]:
    """campaignId/tenantId from the running workflow's memo (a campaign workflow's start writes
    both); empty for a workflow started without them."""
    ids = {key: workflow.memo_value(key, None) for key in ("campaignId", "tenantId")}
    return {k: v for k, v in ids.items() if isinstance(v, str) and v}


def ids_of_headers(headers: Mapping[str, Payload]) -> dict[str, str]:
    payload = headers.get(HEADER)
    if payload is None:
        return {}
    value = PayloadConverter.default.from_payloads([payload])[0]
    return {k: v for k, v in value.items() if isinstance(v, str)} if isinstance(value, dict) else {}


class ObservabilityInterceptor(Interceptor):
    """Installed by `build_worker` on every campaign worker."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityInbound(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _WorkflowInbound


class _ActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        ids = {**ids_of_headers(input.headers), **ids_of_args(input.args)}
        name, attempt = info.activity_type, info.attempt
        with logs.bound(
            campaignId=ids.get("campaignId") or logs.campaign_of(info.workflow_id),
            tenantId=ids.get("tenantId"),
            workflowId=info.workflow_id,
            runId=info.workflow_run_id,
        ):
            if attempt > 1:
                metrics.ACTIVITY_RETRIES.labels(name).inc()
            start = time.perf_counter()
            try:
                result = await super().execute_activity(input)
            except Exception as err:
                metrics.ACTIVITY_FAILURES.labels(name).inc()
                log.warning(
                    "activity %s attempt %d failed: %s",
                    name,
                    attempt,
                    err,
                    extra={"activity": name, "attempt": attempt},
                )
                raise
            finally:
                elapsed = time.perf_counter() - start
                if name in metrics.PAGE_ACTIVITIES:
                    metrics.BATCH_DURATION.labels(name).observe(elapsed)
            log.log(
                logging.INFO if name in metrics.PAGE_ACTIVITIES else logging.DEBUG,
                "activity %s done",
                name,
                extra={
                    "activity": name,
                    "attempt": attempt,
                    "durationMs": round(elapsed * 1000, 1),
                    **_page_summary(result),
                },
            )
            return result


def _page_summary(result: Any) -> dict[str, Any]:
    """Counts of a page result (SendBatchResult), for the page's log line."""
    counts = getattr(result, "counts", None)
    if counts is None or not hasattr(result, "recipients"):
        return {}
    return {"recipients": result.recipients, "sent": getattr(counts, "sent", None)}


class _WorkflowInbound(WorkflowInboundInterceptor):
    ids: dict[str, str] = {}

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        self.ids = {}
        super().init(_WorkflowOutbound(outbound, self))

    def _bound(self) -> Any:
        if not self.ids:  # a handler that runs before `execute_workflow` (see the module's docstring)
            self.ids = ids_of_memo()
        return logs.bound(**self.ids)

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        self.ids = ids_of_args(input.args)
        with self._bound():
            return await super().execute_workflow(input)

    async def handle_signal(self, input: HandleSignalInput) -> None:
        with self._bound():
            await super().handle_signal(input)

    async def handle_query(self, input: HandleQueryInput) -> Any:
        with self._bound():
            return await super().handle_query(input)

    def handle_update_validator(self, input: HandleUpdateInput) -> None:
        with self._bound():
            super().handle_update_validator(input)

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        with self._bound():
            return await super().handle_update_handler(input)


class _WorkflowOutbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, root: _WorkflowInbound) -> None:
        super().__init__(next)
        self._root = root

    def _headers(self, headers: Mapping[str, Payload]) -> Mapping[str, Payload]:
        if not self._root.ids or HEADER in headers:
            return headers
        return {**headers, HEADER: PayloadConverter.default.to_payloads([self._root.ids])[0]}

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = self._headers(input.headers)
        return super().start_activity(input)

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = self._headers(input.headers)
        return super().start_local_activity(input)
