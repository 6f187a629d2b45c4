"""send_triggered: drain a TRIGGERED campaign's queue of matched events (README "Campaign types").

`POST /events` routes each new event, in the same transaction that stores it, to every ACTIVE
(or PAUSED) TRIGGERED campaign it matches: one `trigger_matches` row per (campaign, event id). No
workflow start or signal per event, so ingestion runs at database speed, not at Temporal's.

The campaign workflow runs this activity in a loop. Each call long-polls the queue (every
`trigger_poll_interval`, backing off to `trigger_poll_max_interval` while the queue is empty, at
most `trigger_poll_seconds`), then sends a page of up to `batch_size` matches through the same
pipeline as a segment page (activities.sending.send_rows). Every match is its own EVENT run
(`<campaign>.e<seq>`) with one recipient, so the ledger's (run, recipient, channel) key makes "at
most once per event id" hold through retries and crashes. The halt epoch lives on the campaign's
control run (`<campaign>.t`), so pause and cancel reach a page mid-send exactly as for ONE_TIME.
"""

import asyncio
import time

from temporalio import activity

from activities.deps import ActivityDeps
from activities.sending import send_rows
from core.constants import trigger_control_run_id
from core.messages import CloseTriggersInput, Counts, SendBatchInput, SendBatchResult
from db.ledger import triggers
from db.ledger.runs import halt_epoch


class TriggeredActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="send_triggered")
    async def send_triggered(self, inp: SendBatchInput) -> SendBatchResult:
        deps = self._deps
        control = trigger_control_run_id(inp.campaign_id)
        async with deps.engine.begin() as conn:
            await triggers.ensure_control_run(conn, inp.campaign_id, inp.tenant_id, control)
        if not await self._wait_for_events(inp):
            return SendBatchResult(
                page_complete=True,
                exhausted=False,
                next_cursor=None,
                recipients=0,
                counts=Counts(),
                sent_recipients=0,
            )
        limit = deps.settings.batch_size
        async with deps.engine.begin() as conn:
            rows = await triggers.take(conn, inp.campaign_id, inp.tenant_id, limit)
        result = await send_rows(deps, inp, rows, limit)
        if result.page_complete and rows:
            async with deps.engine.begin() as conn:
                await triggers.mark_done(conn, [r["seq"] for r in rows], [r["run_id"] for r in rows])
        return result

    async def _wait_for_events(self, inp: SendBatchInput) -> bool:
        """Long-poll the queue; False when nothing came or the campaign was halted meanwhile."""
        settings = self._deps.settings
        deadline = time.monotonic() + settings.trigger_poll_seconds
        # Look often while events flow, less and less while the queue stays empty (an idle
        # campaign costs a query every `trigger_poll_max_interval`, not five a second).
        interval = settings.trigger_poll_interval
        while True:
            async with self._deps.engine.connect() as conn:
                if await triggers.any_pending(conn, inp.campaign_id):
                    return True
                epoch = await halt_epoch(conn, inp.run_id)
            if (epoch is not None and epoch >= inp.epoch) or time.monotonic() >= deadline:
                return False
            activity.heartbeat()
            if await _worker_stops_within(interval):
                return False
            interval = min(interval * 1.5, settings.trigger_poll_max_interval)

    @activity.defn(name="close_triggers")
    async def close_triggers(self, inp: CloseTriggersInput) -> None:
        """A finished campaign sends nothing more: its queued events are closed, not left pending."""
        async with self._deps.engine.begin() as conn:
            await triggers.close_pending(conn, inp.campaign_id)


async def _worker_stops_within(seconds: float) -> bool:
    """Wait `seconds`, or less when this worker begins to shut down meanwhile (True then).

    A worker told to stop lets its running activities finish (`CAMPAIGNS_SHUTDOWN_GRACE_SECONDS`).
    A long poll has nothing to finish: it ends as if its time were up, so a deploy or a scale-down
    never waits `trigger_poll_seconds` for an empty queue, and the workflow's next call goes to a
    worker that is still polling (README "Security", Shutdown).
    """
    try:
        await asyncio.wait_for(activity.wait_for_worker_shutdown(), timeout=seconds)
    except TimeoutError:
        return False
    return True
