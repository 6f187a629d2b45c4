"""How an ACTIVE campaign sends: RECURRING runs, the TRIGGERED queue, and the pages of a run.

A ONE_TIME campaign is one run; a RECURRING campaign sleeps until each slot, snapshots and sends
that run, then continues-as-new; a TRIGGERED campaign drains its queue of matched events. A run is
sent as a window of planned pages (workflows/page_window.py), each its own activity.
"""

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from core.constants import (
        ERR_CAMPAIGN_INVALID,
        run_id_for,
        trigger_control_run_id,
    )
    from core.enums import CampaignStatus, CampaignType
    from core.messages import (
        Counts,
        FinishRunInput,
        PlanPagesInput,
        PlanPagesResult,
        SendBatchInput,
        SendBatchResult,
    )
    from workflows.options import RETRY, SHORT
    from workflows.page_window import halt_page, start_page
    from workflows.policy_steps import PATCH_INCOMPLETE_ANSWERS, PATCH_POLICIES
    from workflows.snapshot_steps import SnapshotSteps
    from workflows.transitions import invalid

S = CampaignStatus
T = CampaignType

# Pages planned per plan_pages call.
PLAN_PAGES = 8
# plan_pages learns the run's size, and each page is sent with the largest page planned as its
# limit (older histories replay with pages of the worker's batch size and the limit they had).
PATCH_PAGE_SIZE = "page-size"


class RunSteps(SnapshotSteps):
    # ---- RECURRING -----------------------------------------------------------------------------

    async def _recurring_step(self) -> None:
        """Sleep until the next run, snapshot and send it, then continue-as-new (README "Campaign types")."""
        st = self._state
        if st.run.run_active:
            await self._send_step()
            return
        schedule = st.recurrence.schedule
        if schedule is None:
            raise invalid("a RECURRING campaign has no schedule", {}, kind=ERR_CAMPAIGN_INVALID)
        if schedule.max_runs is not None and st.recurrence.run_count >= schedule.max_runs:
            self._complete()
            return
        at = await self._next_run(self._skip_missed_slots())
        if at is None:  # endAt reached
            self._complete()
            return
        if st.recurrence.next_run_at != at:
            st.recurrence.next_run_at = at
            self._changed()
            await self._sync()
        if not await self._sleep_until(at):
            return  # paused, cancelled or edited: decide again
        if st.lifecycle.status != S.ACTIVE:
            return
        cursor = st.run
        cursor.run_number += 1
        cursor.run_active = True
        st.recurrence.last_slot = at
        st.recurrence.last_run_at = workflow.now()
        cursor.snapshot_cursor = None
        cursor.snapshot_complete = False
        cursor.send_cursor = None
        cursor.pages_ahead, cursor.pages_done, cursor.plan_exhausted = [], [], False
        cursor.page_limit = 0
        st.tally.target_base = st.tally.target_count or 0
        last = schedule.max_runs is not None and st.recurrence.run_count + 1 >= schedule.max_runs
        st.recurrence.next_run_at = None if last else await self._next_run(at)
        self._changed()

    # ---- TRIGGERED -----------------------------------------------------------------------------

    async def _trigger_step(self) -> None:
        """Drain this campaign's queue of matched events (the API routes them, in batches)."""
        st = self._state
        result = await self._batch("send_triggered", trigger_control_run_id(self._input.campaign_id))
        if result is None:
            return
        self._batches_this_run += 1
        if result.recipients:
            st.tally.processed += result.recipients
            st.tally.target_count = st.tally.processed
            st.tally.counts = st.tally.counts.plus(result.counts)
            st.tally.sent_recipients = result.sent_recipients
            self._changed()
        if workflow.patched(PATCH_POLICIES):
            self._take_in_policies(result)
            if (
                st.policies.held_until is not None
                and st.policies.held_until <= workflow.now()
                and st.lifecycle.status == S.ACTIVE
            ):
                await self._sweep(trigger_control_run_id(self._input.campaign_id))

    # ---- ONE_TIME and each RECURRING run ---------------------------------------------------

    async def _batch(self, activity: str, run_id: str) -> SendBatchResult | None:
        """One page activity; a page that cannot succeed pauses the campaign with the reason."""
        st = self._state
        self._batch_running = True
        try:
            return await self._run_batch(activity, run_id, st.lifecycle.epoch)
        except ActivityError as err:
            self._pause_on_error(err)
            return None
        finally:
            self._batch_running = False

    async def _send_step(self) -> None:
        st = self._state
        if st.run.run_number == 0:
            st.run.run_number = 1
            self._changed()
        run_id = run_id_for(self._input.campaign_id, st.run.run_number)
        if not st.run.snapshot_complete and not self._overlaps():
            await self._snapshot_chunk(run_id)
            return
        if not st.run.snapshot_complete or self._pages_windowed():
            await self._send_window(run_id)
            return
        result = await self._batch("send_batch", run_id)
        if result is None:
            return
        self._batches_this_run += 1
        st.tally.sent_recipients = result.sent_recipients
        if result.page_complete:
            st.run.send_cursor = result.next_cursor
            st.tally.processed += result.recipients
            st.tally.pages += 1
            st.tally.page_size = max(st.tally.page_size, result.recipients)
            st.tally.counts = st.tally.counts.plus(result.counts)
        self._changed()
        if result.exhausted and st.lifecycle.status == S.ACTIVE:
            await self._finish_run(run_id)

    async def _finish_run(self, run_id: str) -> None:
        st = self._state
        await workflow.execute_activity(
            "finish_run",
            FinishRunInput(run_id=run_id),
            summary=f"close run {st.run.run_number}",
            start_to_close_timeout=SHORT,
            retry_policy=RETRY,
        )
        if self._input.type == T.RECURRING:
            st.run.run_active = False
            st.recurrence.run_count += 1
            self._run_finished = True
            self._changed()
            limit = st.recurrence.schedule.max_runs if st.recurrence.schedule is not None else None
            if limit is not None and st.recurrence.run_count >= limit:
                self._complete()
            return
        # A cancel or pause that arrived meanwhile has already been answered: it stands.
        self._complete()

    # ---- the page window --------------------------------------------------------------------

    async def _send_window(self, run_id: str) -> None:
        """Send the run's pages with up to `window` in flight, each its own activity (so several
        workers can share one campaign). Bounds are planned ahead; the cursor advances over the
        contiguous prefix of done pages, and done pages above it are remembered, so a pause or a
        continue-as-new neither resends nor recounts a page. Returns after at least one page
        finished, or once everything in flight has been drained (pause, cancel, error, or a due
        continue-as-new)."""
        st = self._state
        await self._collect_snapshot()
        if st.lifecycle.status != S.ACTIVE:
            return  # the chunk that returned paused the campaign (e.g. its segment is gone)
        self._start_snapshot(run_id)
        undone = [b for b in st.run.pages_ahead if b not in st.run.pages_done]
        if (
            len(undone) <= st.run.window
            and not st.run.plan_exhausted
            and self._snapshot_news()
            and not self._can_due()
        ):
            await self._plan_pages(run_id)
            return
        if not st.run.pages_ahead and self._snapshot is None:
            await self._end_of_plan(run_id)
            return
        if not self._can_due():
            self._fill_window(run_id)
        if self._window or self._snapshot is not None:
            await self._wait_for_a_page(run_id)

    async def _plan_pages(self, run_id: str) -> None:
        """Plan the bounds of the next pages (and learn how many may be in flight)."""
        st = self._state
        sized = workflow.patched(PATCH_PAGE_SIZE)
        whole = st.run.snapshot_complete
        # While the snapshot is taken, the run is at least what it holds so far: pages grow with
        # it, and only the window's worth is planned at a time, so later pages are cut larger.
        if whole:
            run_size = max(0, (st.tally.target_count or 0) - st.tally.target_base) if sized else None
        else:
            run_size = self._snapshotted if sized else None
        self._planned_upto = st.run.snapshot_cursor
        plan: PlanPagesResult = await workflow.execute_activity(
            "plan_pages",
            PlanPagesInput(
                run_id=run_id,
                after=st.run.pages_ahead[-1] if st.run.pages_ahead else st.run.send_cursor,
                pages=PLAN_PAGES if whole else st.run.window,
                run_size=run_size,
                snapshot_upto=None if whole else st.run.snapshot_cursor,
            ),
            summary=f"plan the next pages of run {st.run.run_number}",
            result_type=PlanPagesResult,
            start_to_close_timeout=SHORT,
            retry_policy=RETRY,
        )
        st.run.pages_ahead.extend(plan.bounds)
        st.run.plan_exhausted = plan.exhausted
        st.run.window = max(1, plan.window)
        if sized:
            st.run.page_limit = max(st.run.page_limit, plan.page_size)

    async def _end_of_plan(self, run_id: str) -> None:
        """No page is left ahead: once the plan is done and nothing is in flight, the run ends
        (after the held messages' sweeps, if any are held)."""
        st = self._state
        if st.run.plan_exhausted and not self._window and st.lifecycle.status == S.ACTIVE:
            if st.policies.held_until is not None and workflow.patched(PATCH_POLICIES):
                await self._wait_and_sweep(run_id)
                return
            await self._finish_run(run_id)

    def _fill_window(self, run_id: str) -> None:
        """Start the next pages not done nor in flight, up to the window."""
        st = self._state
        if not self._window:
            self._window.epoch = st.lifecycle.epoch  # pages in flight together share one epoch
        for index, bound in enumerate(st.run.pages_ahead):
            if len(self._window) >= st.run.window:
                break
            if bound in st.run.pages_done or bound in self._window:
                continue
            after = st.run.pages_ahead[index - 1] if index else st.run.send_cursor
            self._window.add(bound, self._start_page(run_id, after, bound))

    async def _wait_for_a_page(self, run_id: str) -> None:
        """Wait until a page in flight finishes or the campaign leaves ACTIVE; take in what
        finished, and drain the rest if it left."""
        st = self._state
        self._batch_running = True
        stop = asyncio.ensure_future(workflow.wait_condition(self._not_active))
        chunk = [self._snapshot] if self._snapshot is not None else []
        waiting: list[asyncio.Future[Any]] = [*self._window.handles(), *chunk, stop]
        await workflow.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not stop.done():
            stop.cancel()
        failure = await self._window.collect_done(self._page_done)
        if failure is not None:
            self._pause_on_error(failure)
        await self._collect_snapshot()
        if st.lifecycle.status != S.ACTIVE:
            await self._drain_window(run_id)
        self._batch_running = bool(self._window) or self._snapshot is not None

    async def _drain_window(self, run_id: str) -> None:
        """Pause, cancel or a failed page: every page in flight starts no new message; wait for
        them all and take in what they did. Called wherever the status may have left ACTIVE while
        pages were in flight (also from the main loop), so a pause never waits on a page that
        nobody collects."""
        await self._collect_snapshot(wait=True)
        if not self._window:
            self._batch_running = False
            return
        self._batch_running = True
        await self._window.halt(run_id)
        failure = await self._window.collect_done(self._page_done)
        if failure is not None:
            self._pause_on_error(failure)
        self._batch_running = bool(self._window)

    def _start_page(self, run_id: str, after: str | None, upto: str) -> "asyncio.Future[SendBatchResult]":
        st = self._state
        return start_page(
            SendBatchInput(
                campaign_id=self._input.campaign_id,
                tenant_id=self._input.tenant_id,
                run_id=run_id,
                after=after,
                upto=upto,
                limit=max(st.run.page_limit, st.tally.page_size) or None,
                epoch=self._window.epoch,
                now=workflow.now(),
                anchor=self._anchor(),
            ),
            f"send run {st.run.run_number} page ({after or 'start'}, {upto}]",
        )

    def _page_done(self, bound: str, result: SendBatchResult) -> None:
        cursor, tally = self._state.run, self._state.tally
        self._batches_this_run += 1
        tally.sent_recipients = max(tally.sent_recipients, result.sent_recipients)
        if result.page_complete:
            cursor.pages_done.append(bound)
            tally.processed += result.recipients
            tally.pages += 1
            tally.page_size = max(tally.page_size, result.recipients)
            tally.counts = tally.counts.plus(result.counts)
            while cursor.pages_ahead and cursor.pages_ahead[0] in cursor.pages_done:
                cursor.send_cursor = cursor.pages_ahead.pop(0)
                cursor.pages_done.remove(cursor.send_cursor)
            if workflow.patched(PATCH_POLICIES):
                self._take_in_policies(result)
        elif result.answered and workflow.patched(PATCH_INCOMPLETE_ANSWERS):
            # Stopped early (its time budget, a pause): what the provider answered still counts,
            # so a throttled page the provider refuses is auto-paused within one attempt.
            self._judge_refusals(result)
        self._changed()

    async def _run_batch(self, activity: str, run_id: str, epoch: int) -> SendBatchResult:
        cursor = self._state.run
        summary = (
            "send the queued events"
            if activity == "send_triggered"
            else f"send page {self._state.tally.pages + 1} of run {cursor.run_number}"
            f" (after {cursor.send_cursor or 'start'})"
        )
        handle = start_page(
            SendBatchInput(
                campaign_id=self._input.campaign_id,
                tenant_id=self._input.tenant_id,
                run_id=run_id,
                after=self._state.run.send_cursor,
                epoch=epoch,
                now=workflow.now(),
                anchor=self._anchor(),
            ),
            summary,
            activity,
        )
        stop = asyncio.ensure_future(workflow.wait_condition(self._not_active))
        waiting: list[asyncio.Future[Any]] = [handle, stop]
        await workflow.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if handle.done():
            stop.cancel()
            result: SendBatchResult = await handle
            return result
        # Pause/cancel: tell the running batch to start no new message; it lets its in-flight
        # ones finish and returns normally with the page incomplete.
        await halt_page(run_id, epoch, handle, "halt the running page (pause/cancel)")
        try:
            result = await handle
        except ActivityError as err:
            if not isinstance(err.cause, CancelledError):
                raise
            result = SendBatchResult(
                page_complete=False,
                exhausted=False,
                next_cursor=self._state.run.send_cursor,
                recipients=0,
                counts=Counts(),
                sent_recipients=self._state.tally.sent_recipients,
            )
        return result

    def _should_continue_as_new(self) -> bool:
        if self._batch_running or self._state.lifecycle.status.is_final:
            return False
        return (
            self._run_finished
            or self._batches_this_run >= self._input.batches_per_run
            or workflow.info().is_continue_as_new_suggested()
        )
