"""Pages of a run in flight: start them, take in the ones that returned, halt them all.

A run's audience is cut into planned pages (bounds known ahead); a window of them runs at once,
each its own `send_batch` activity, so several workers share one campaign. Stopping is the delicate
part: a page must never be cancelled mid-message (its in-flight messages would end UNKNOWN), so a
pause or cancel first asks the pages to start no new message (`halt_run`), gives them HALT_GRACE to
return with what they sent, and only cancels a page that is not running at all (waiting to retry,
e.g. while the provider is down). Both campaign workflows stop their pages through this module.
"""

import asyncio
from collections.abc import Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from core.messages import HaltInput, SendBatchInput, SendBatchResult
    from workflows.options import BATCH_TIMEOUT, HALT_GRACE, HEARTBEAT, RETRY, SHORT


async def request_halt(run_id: str, epoch: int, summary: str | None) -> None:
    """Tell every page of the run started under `epoch` to start no new message."""
    await workflow.execute_activity(
        "halt_run",
        HaltInput(run_id=run_id, epoch=epoch),
        summary=summary,
        start_to_close_timeout=SHORT,
        retry_policy=RETRY,
    )


async def halt_page(
    run_id: str, epoch: int, handle: "asyncio.Future[SendBatchResult]", summary: str | None = None
) -> None:
    """Halt one running page and wait for it to return (or cancel it if it is not running)."""
    await request_halt(run_id, epoch, summary)
    try:
        await workflow.wait_condition(handle.done, timeout=HALT_GRACE)
    except TimeoutError:
        handle.cancel()  # not running but waiting to retry (e.g. the provider is down)


def start_page(
    inp: SendBatchInput,
    summary: str | None,
    activity: str = "send_batch",
    cancellation: ActivityCancellationType = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
) -> "asyncio.Future[SendBatchResult]":
    """One page (`send_batch`, or `send_triggered` for a trigger queue) as its own activity. A
    cancel waits for the page to acknowledge it (the journey child, older, only requests it)."""
    return workflow.start_activity(
        activity,
        inp,
        summary=summary,
        result_type=SendBatchResult,
        start_to_close_timeout=BATCH_TIMEOUT,
        heartbeat_timeout=HEARTBEAT,
        retry_policy=RETRY,
        cancellation_type=cancellation,
    )


class PageWindow:
    """The pages of one run in flight, by their upper bound, all started under one epoch."""

    def __init__(self) -> None:
        self.inflight: dict[str, asyncio.Future[SendBatchResult]] = {}
        self.epoch = 0

    def __bool__(self) -> bool:
        return bool(self.inflight)

    def __len__(self) -> int:
        return len(self.inflight)

    def __contains__(self, bound: object) -> bool:
        return bound in self.inflight

    def add(self, bound: str, handle: "asyncio.Future[SendBatchResult]") -> None:
        self.inflight[bound] = handle

    def handles(self) -> list["asyncio.Future[SendBatchResult]"]:
        return list(self.inflight.values())

    async def collect_done(self, on_done: Callable[[str, SendBatchResult], None]) -> ActivityError | None:
        """Take in the pages that returned; a page that failed for good is returned."""
        failure: ActivityError | None = None
        for bound, handle in list(self.inflight.items()):
            if not handle.done():
                continue
            del self.inflight[bound]
            try:
                result = await handle
            except ActivityError as err:
                if not isinstance(err.cause, CancelledError):
                    failure = err
                continue
            on_done(bound, result)
        return failure

    async def halt(self, run_id: str) -> None:
        """Pause/cancel: every page in flight starts no new message; wait for them to return."""
        await request_halt(run_id, self.epoch, "halt the running pages (pause/cancel)")
        pending = [h for h in self.inflight.values() if not h.done()]
        if pending:
            try:
                await workflow.wait_condition(lambda: all(h.done() for h in pending), timeout=HALT_GRACE)
            except TimeoutError:
                for handle in pending:
                    if not handle.done():
                        handle.cancel()  # waiting to retry (e.g. the provider is down)
                await workflow.wait_condition(lambda: all(h.done() for h in pending))
