"""CampaignWorkflow: the durable lifecycle of one campaign (contract §1, §5).

Handlers only change state; the main loop does the work (snapshot, batched sends, read-model
sync). Lifecycle calls that need an answer are Updates whose validators refuse illegal
transitions before anything reaches history; `pause`, `resume` and `cancel` also exist as signals
for operators and parent workflows, and those ignore (and log) what is illegal.
"""

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from core.constants import (
        ERR_CAMPAIGN_INVALID,
        ERR_ILLEGAL_TRANSITION,
        run_id_for,
        trigger_control_run_id,
    )
    from core.enums import CampaignStatus, CampaignType
    from core.messages import (
        ApplyEditInput,
        CampaignProgress,
        CampaignState,
        CampaignWorkflowInput,
        CheckCampaignInput,
        CheckCampaignResult,
        CloseTriggersInput,
        Counts,
        EditRequest,
        FinishRunInput,
        LedgerCountsInput,
        NextRunInput,
        NextRunResult,
        PlanPagesInput,
        PlanPagesResult,
        ScheduleRequest,
        SendBatchInput,
        SendBatchResult,
        SnapshotInput,
        SnapshotResult,
        SyncCampaignInput,
        TransitionResult,
    )
    from workflows import projections
    from workflows.options import RETRY, SHORT
    from workflows.page_window import PageWindow, halt_page, start_page
    from workflows.transitions import Action, allows, invalid, require

S = CampaignStatus
T = CampaignType

# Sends a run as a window of planned pages (workflow.patched: older histories replay page by page).
PATCH_PAGE_WINDOW = "page-window"
# The final counts come from the ledger (older histories keep their page counts).
PATCH_LEDGER_RECOUNT = "ledger-recount"
# Pages planned per plan_pages call.
PLAN_PAGES = 8



@workflow.defn(name="CampaignWorkflow")
class CampaignWorkflow:
    @workflow.init
    def __init__(self, input: CampaignWorkflowInput) -> None:
        self._input = input
        self._state = input.state.model_copy(deep=True) if input.state else CampaignState()
        self._synced_version = 0 if input.state is None else self._state.version - 1
        self._batch_running = False
        self._lock = asyncio.Lock()
        self._batches_this_run = 0
        # Pages of the window in flight, by their upper bound.
        self._window = PageWindow()
        # A RECURRING run just finished: continue-as-new so history never grows with runs.
        self._run_finished = False

    # ---- main loop ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: CampaignWorkflowInput) -> CampaignProgress:
        while True:
            await self._sync()
            if self._window and self._state.status != S.ACTIVE:
                # Paused or cancelled while pages were in flight (also during the sync above).
                await self._drain_window(run_id_for(self._input.campaign_id, self._state.run_number))
                continue
            status = self._state.status
            if self._state.discarded or status.is_final:
                break
            if status in (S.DRAFT, S.PAUSED):
                await self._wait_for_change()
            elif status == S.SCHEDULED:
                await self._sleep_until_scheduled()
            elif status == S.ACTIVE:
                if self._input.type == T.RECURRING:
                    await self._recurring_step()
                elif self._input.type == T.TRIGGERED:
                    await self._trigger_step()
                else:
                    await self._send_step()
            if self._should_continue_as_new():
                await self._sync()
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._state.discarded and not self._state.status.is_final:
                    # Everything the next run needs travels in its input (handlers' update ids
                    # do not carry over; the state does).
                    workflow.continue_as_new(input.model_copy(update={"state": self._state}))
        if self._input.type == T.TRIGGERED and not self._state.discarded:
            # Events still queued for a finished campaign will never be sent: say so in the queue.
            await workflow.execute_activity(
                "close_triggers",
                CloseTriggersInput(campaign_id=self._input.campaign_id),
                summary="close the queue of events not sent",
                start_to_close_timeout=SHORT,
                retry_policy=RETRY,
            )
        if not self._state.discarded and workflow.patched(PATCH_LEDGER_RECOUNT):
            # The page counts leave out what a cancel cut short (skips the snapshot recorded for
            # pages never sent, UNKNOWNs of a halted page): the final counts are the ledger's.
            counts: Counts = await workflow.execute_activity(
                "close_ledger",
                LedgerCountsInput(campaign_id=self._input.campaign_id),
                summary="final counts from the ledger",
                result_type=Counts,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RETRY,
            )
            if counts != self._state.counts:
                self._state.counts = counts
                self._changed()
        await self._sync()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._sync()
        return self.progress()

    async def _wait_for_change(self) -> None:
        version = self._state.version
        await workflow.wait_condition(lambda: self._state.version != version)

    async def _sleep_until_scheduled(self) -> None:
        at = self._state.scheduled_at
        if at is None:
            raise invalid("a SCHEDULED campaign has no scheduledAt", {}, kind=ERR_CAMPAIGN_INVALID)
        remaining = (at - workflow.now()).total_seconds()
        if remaining > 0:
            version = self._state.version
            try:
                # Durable timer; a reschedule or cancel bumps the version and wakes us at once.
                await workflow.wait_condition(
                    lambda: self._state.version != version, timeout=timedelta(seconds=remaining)
                )
                return
            except TimeoutError:
                pass
        if self._state.status == S.SCHEDULED and self._state.scheduled_at == at:
            self._state.status = S.ACTIVE
            self._state.started_at = workflow.now()
            self._changed()

    # ---- RECURRING -----------------------------------------------------------------------------

    async def _recurring_step(self) -> None:
        """Sleep until the next run, snapshot and send it, then continue-as-new (contract §6)."""
        st = self._state
        if st.run_active:
            await self._send_step()
            return
        schedule = st.schedule
        if schedule is None:
            raise invalid("a RECURRING campaign has no schedule", {}, kind=ERR_CAMPAIGN_INVALID)
        if schedule.max_runs is not None and st.run_count >= schedule.max_runs:
            self._complete()
            return
        # Slots that passed while paused (or while a long run was sending) are skipped.
        after = workflow.now() if st.last_slot is None else max(st.last_slot, workflow.now())
        at = await self._next_run(after)
        if at is None:  # endAt reached
            self._complete()
            return
        if st.next_run_at != at:
            st.next_run_at = at
            self._changed()
            await self._sync()
        remaining = (at - workflow.now()).total_seconds()
        if remaining > 0:
            version = st.version
            try:
                await workflow.wait_condition(
                    lambda: self._state.version != version, timeout=timedelta(seconds=remaining)
                )
                return  # paused, cancelled or edited: decide again
            except TimeoutError:
                pass
        if st.status != S.ACTIVE:
            return
        st.run_number += 1
        st.run_active = True
        st.last_slot = at
        st.last_run_at = workflow.now()
        st.snapshot_cursor = None
        st.snapshot_complete = False
        st.send_cursor = None
        st.pages_ahead, st.pages_done, st.plan_exhausted = [], [], False
        st.target_base = st.target_count or 0
        last = schedule.max_runs is not None and st.run_count + 1 >= schedule.max_runs
        st.next_run_at = None if last else await self._next_run(at)
        self._changed()

    async def _next_run(self, after: datetime) -> datetime | None:
        """Local times in the schedule's zone, resolved in a local activity (so replay does not
        depend on the tz database the worker has then)."""
        if self._state.schedule is None:
            raise invalid("only a RECURRING campaign has a next run", {}, kind=ERR_CAMPAIGN_INVALID)
        result: NextRunResult = await workflow.execute_local_activity(
            "next_run_time",
            NextRunInput(schedule=self._state.schedule, after=after),
            result_type=NextRunResult,
            start_to_close_timeout=timedelta(seconds=10),
        )
        return result.at

    def _complete(self) -> None:
        if self._state.status == S.ACTIVE:
            self._state.status = S.COMPLETED
            self._state.completed_at = workflow.now()
            self._state.next_run_at = None
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
            st.processed += result.recipients
            st.target_count = st.processed
            st.counts = st.counts.plus(result.counts)
            st.sent_recipients = result.sent_recipients
            self._changed()

    # ---- ONE_TIME and each RECURRING run ---------------------------------------------------

    async def _batch(self, activity: str, run_id: str) -> SendBatchResult | None:
        """One page activity; a page that cannot succeed pauses the campaign with the reason."""
        st = self._state
        self._batch_running = True
        try:
            return await self._run_batch(activity, run_id, st.epoch)
        except ActivityError as err:
            self._pause_on_error(err)
            return None
        finally:
            self._batch_running = False

    def _pause_on_error(self, err: ActivityError) -> None:
        """A step that cannot succeed (e.g. its template vanished) pauses the campaign with the
        reason instead of failing the workflow; an operator can fix and resume."""
        st = self._state
        st.last_error = str(err.cause or err)
        workflow.logger.error("campaign step failed, pausing campaign: %s", st.last_error)
        if st.status == S.ACTIVE:
            st.status = S.PAUSED
            st.paused_at = workflow.now()
            st.next_run_at = None
            st.epoch += 1
            self._changed()

    async def _send_step(self) -> None:
        st = self._state
        if st.run_number == 0:
            st.run_number = 1
            self._changed()
        run_id = run_id_for(self._input.campaign_id, st.run_number)
        if not st.snapshot_complete:
            try:
                snap = await workflow.execute_activity(
                    "snapshot_audience",
                    SnapshotInput(
                        campaign_id=self._input.campaign_id,
                        tenant_id=self._input.tenant_id,
                        run_id=run_id,
                        run_number=st.run_number,
                        after=st.snapshot_cursor,
                    ),
                    summary=f"snapshot run {st.run_number} (after {st.snapshot_cursor or 'start'})",
                    result_type=SnapshotResult,
                    start_to_close_timeout=timedelta(minutes=5),
                    retry_policy=RETRY,
                )
            except ActivityError as err:
                # E.g. the segment was deleted since the check (weeks, for a RECURRING campaign):
                # pause with the reason instead of failing the workflow.
                self._pause_on_error(err)
                return
            st.snapshot_cursor = snap.last_customer_id
            if snap.done:
                st.snapshot_complete = True
                st.target_count = st.target_base + snap.target_count
                self._changed()
            return
        if workflow.patched(PATCH_PAGE_WINDOW):
            await self._send_window(run_id)
            return
        result = await self._batch("send_batch", run_id)
        if result is None:
            return
        self._batches_this_run += 1
        st.sent_recipients = result.sent_recipients
        if result.page_complete:
            st.send_cursor = result.next_cursor
            st.processed += result.recipients
            st.pages += 1
            st.page_size = max(st.page_size, result.recipients)
            st.counts = st.counts.plus(result.counts)
        self._changed()
        if result.exhausted and st.status == S.ACTIVE:
            await self._finish_run(run_id)

    async def _finish_run(self, run_id: str) -> None:
        st = self._state
        await workflow.execute_activity(
            "finish_run",
            FinishRunInput(run_id=run_id),
            summary=f"close run {st.run_number}",
            start_to_close_timeout=SHORT,
            retry_policy=RETRY,
        )
        if self._input.type == T.RECURRING:
            st.run_active = False
            st.run_count += 1
            self._run_finished = True
            self._changed()
            limit = st.schedule.max_runs if st.schedule is not None else None
            if limit is not None and st.run_count >= limit:
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
        undone = [b for b in st.pages_ahead if b not in st.pages_done]
        if len(undone) <= st.window and not st.plan_exhausted and not self._can_due():
            plan: PlanPagesResult = await workflow.execute_activity(
                "plan_pages",
                PlanPagesInput(
                    run_id=run_id,
                    after=st.pages_ahead[-1] if st.pages_ahead else st.send_cursor,
                    pages=PLAN_PAGES,
                ),
                summary=f"plan the next pages of run {st.run_number}",
                result_type=PlanPagesResult,
                start_to_close_timeout=SHORT,
                retry_policy=RETRY,
            )
            st.pages_ahead.extend(plan.bounds)
            st.plan_exhausted = plan.exhausted
            st.window = max(1, plan.window)
            return
        if not st.pages_ahead:
            if st.plan_exhausted and not self._window and st.status == S.ACTIVE:
                await self._finish_run(run_id)
            return
        if not self._can_due():
            if not self._window:
                self._window.epoch = st.epoch  # pages in flight together share one epoch
            for index, bound in enumerate(st.pages_ahead):
                if len(self._window) >= st.window:
                    break
                if bound in st.pages_done or bound in self._window:
                    continue
                after = st.pages_ahead[index - 1] if index else st.send_cursor
                self._window.add(bound, self._start_page(run_id, after, bound))
        if not self._window:
            return
        self._batch_running = True
        stop = asyncio.ensure_future(workflow.wait_condition(lambda: self._state.status != S.ACTIVE))
        waiting: list[asyncio.Future[Any]] = [*self._window.handles(), stop]
        await workflow.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not stop.done():
            stop.cancel()
        failure = await self._window.collect_done(self._page_done)
        if failure is not None:
            self._pause_on_error(failure)
        if st.status != S.ACTIVE:
            await self._drain_window(run_id)
        self._batch_running = bool(self._window)

    async def _drain_window(self, run_id: str) -> None:
        """Pause, cancel or a failed page: every page in flight starts no new message; wait for
        them all and take in what they did. Called wherever the status may have left ACTIVE while
        pages were in flight (also from the main loop), so a pause never waits on a page that
        nobody collects."""
        if not self._window:
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
                limit=st.page_size or None,
                epoch=self._window.epoch,
            ),
            f"send run {st.run_number} page ({after or 'start'}, {upto}]",
        )

    def _page_done(self, bound: str, result: SendBatchResult) -> None:
        st = self._state
        self._batches_this_run += 1
        st.sent_recipients = max(st.sent_recipients, result.sent_recipients)
        if result.page_complete:
            st.pages_done.append(bound)
            st.processed += result.recipients
            st.pages += 1
            st.page_size = max(st.page_size, result.recipients)
            st.counts = st.counts.plus(result.counts)
            while st.pages_ahead and st.pages_ahead[0] in st.pages_done:
                st.send_cursor = st.pages_ahead.pop(0)
                st.pages_done.remove(st.send_cursor)
        self._changed()

    def _can_due(self) -> bool:
        return (
            self._run_finished
            or self._batches_this_run >= self._input.batches_per_run
            or workflow.info().is_continue_as_new_suggested()
        )

    async def _run_batch(self, activity: str, run_id: str, epoch: int) -> SendBatchResult:
        st = self._state
        summary = (
            "send the queued events"
            if activity == "send_triggered"
            else f"send page {st.pages + 1} of run {st.run_number} (after {st.send_cursor or 'start'})"
        )
        handle = start_page(
            SendBatchInput(
                campaign_id=self._input.campaign_id,
                tenant_id=self._input.tenant_id,
                run_id=run_id,
                after=self._state.send_cursor,
                epoch=epoch,
            ),
            summary,
            activity,
        )
        stop = asyncio.ensure_future(workflow.wait_condition(lambda: self._state.status != S.ACTIVE))
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
                next_cursor=self._state.send_cursor,
                recipients=0,
                counts=Counts(),
                sent_recipients=self._state.sent_recipients,
            )
        return result

    def _should_continue_as_new(self) -> bool:
        if self._batch_running or self._state.status.is_final:
            return False
        return (
            self._run_finished
            or self._batches_this_run >= self._input.batches_per_run
            or workflow.info().is_continue_as_new_suggested()
        )

    # ---- read model & search attributes -----------------------------------------------------

    def _changed(self) -> None:
        self._state.version += 1

    async def _sync(self) -> None:
        """Write the state to the Postgres read model and the search attributes, once per change."""
        while self._synced_version < self._state.version:
            version = self._state.version
            projections.upsert_search_attributes(self._input, self._state)
            workflow.set_current_details(projections.details(self._input.type, self._state))
            await workflow.execute_activity(
                "sync_campaign",
                SyncCampaignInput(campaign_id=self._input.campaign_id, version=version, state=self._state),
                summary=f"read model: {self._state.status.value} (v{version})",
                start_to_close_timeout=SHORT,
                retry_policy=RETRY,
            )
            self._synced_version = max(self._synced_version, version)

    async def _wait_settled(self) -> None:
        """Return once no batch runs and the read model shows the current state."""
        await workflow.wait_condition(lambda: not self._batch_running)
        version = self._state.version
        await workflow.wait_condition(lambda: self._synced_version >= version)

    # ---- lifecycle -----------------------------------------------------------------------------

    def _require(self, action: Action) -> None:
        require(action, self._state.status, self._state.discarded)

    def _require_sendable_type(self, action: str) -> None:
        if self._input.type == T.JOURNEY:
            raise ApplicationError(
                f"cannot {action} a JOURNEY campaign: journeys send it as a child workflow",
                {"status": self._state.status.value, "action": action},
                type=ERR_ILLEGAL_TRANSITION,
                non_retryable=True,
            )

    async def _check(self) -> CheckCampaignResult:
        result: CheckCampaignResult = await workflow.execute_activity(
            "check_campaign",
            CheckCampaignInput(campaign_id=self._input.campaign_id, tenant_id=self._input.tenant_id),
            summary="pre-send check: segment, templates, channels",
            result_type=CheckCampaignResult,
            start_to_close_timeout=SHORT,
            retry_policy=RETRY,
        )
        if not result.ok:
            raise ApplicationError(
                "campaign cannot be sent: " + "; ".join(result.problems),
                {"problems": result.problems},
                type=ERR_CAMPAIGN_INVALID,
                non_retryable=True,
            )
        return result

    def _adopt(self, check: CheckCampaignResult) -> None:
        """What the pre-send check pins: the planned audience size, a RECURRING schedule."""
        if self._input.type == T.ONE_TIME:
            self._state.target_count = check.segment_size
        else:
            self._state.target_count = 0
        self._state.schedule = check.schedule

    def _result(self) -> TransitionResult:
        return projections.transition_result(self._input, self._state)

    @workflow.update(name="schedule")
    async def schedule(self, req: ScheduleRequest) -> TransitionResult:
        async with self._lock:
            self._require("schedule")
            check = await self._check()
            self._require("schedule")
            self._state.status = S.SCHEDULED
            self._state.scheduled_at = req.scheduled_at
            self._adopt(check)
            self._changed()
        await self._wait_settled()
        return self._result()

    @schedule.validator
    def _validate_schedule(self, req: ScheduleRequest) -> None:
        self._require_sendable_type("schedule")
        self._require("schedule")
        if req.scheduled_at.tzinfo is None:
            raise ValueError("scheduledAt must carry a timezone")
        if req.scheduled_at <= workflow.now():
            raise ApplicationError(
                "scheduledAt must be in the future",
                {"field": "scheduledAt"},
                type=ERR_CAMPAIGN_INVALID,
                non_retryable=True,
            )

    @workflow.update(name="execute")
    async def execute(self) -> TransitionResult:
        async with self._lock:
            self._require("execute")
            check = await self._check()
            self._require("execute")
            self._state.status = S.ACTIVE
            self._state.started_at = workflow.now()
            self._adopt(check)
            if self._state.schedule is not None:
                # Shown at once (GET right after execute); the main loop computes the same.
                self._state.next_run_at = await self._next_run(workflow.now())
            self._changed()
        version = self._state.version
        await workflow.wait_condition(lambda: self._synced_version >= version)
        return self._result()

    @execute.validator
    def _validate_execute(self) -> None:
        self._require_sendable_type("execute")
        self._require("execute")

    def _do_pause(self) -> None:
        self._state.status = S.PAUSED
        self._state.paused_at = workflow.now()
        self._state.next_run_at = None  # nothing is planned while paused
        self._state.epoch += 1
        self._changed()

    def _do_resume(self) -> None:
        self._state.status = S.ACTIVE
        self._state.resumed_at = workflow.now()
        self._state.last_error = None
        self._changed()

    def _do_cancel(self) -> None:
        self._state.status = S.CANCELLED
        self._state.cancelled_at = workflow.now()
        self._state.epoch += 1
        self._changed()

    @workflow.update(name="pause")
    async def pause(self) -> TransitionResult:
        self._require("pause")
        self._do_pause()
        await self._wait_settled()
        return self._result()

    @pause.validator
    def _validate_pause(self) -> None:
        self._require("pause")

    @workflow.update(name="resume")
    async def resume(self) -> TransitionResult:
        self._require("resume")
        self._do_resume()
        st = self._state
        if st.schedule is not None and not st.run_active:
            # Runs whose time passed while paused are skipped: the next one is after now.
            after = workflow.now() if st.last_slot is None else max(st.last_slot, workflow.now())
            st.next_run_at = await self._next_run(after)
            self._changed()
        version = self._state.version
        await workflow.wait_condition(lambda: self._synced_version >= version)
        return self._result()

    @resume.validator
    def _validate_resume(self) -> None:
        self._require("resume")

    @workflow.update(name="cancel")
    async def cancel(self) -> TransitionResult:
        self._require("cancel")
        self._do_cancel()
        await self._wait_settled()
        return self._result()

    @cancel.validator
    def _validate_cancel(self) -> None:
        self._require("cancel")

    @workflow.update(name="edit")
    async def edit(self, req: EditRequest) -> TransitionResult:
        async with self._lock:
            self._require("edit")
            await workflow.execute_activity(
                "apply_edit",
                ApplyEditInput(
                    campaign_id=self._input.campaign_id, tenant_id=self._input.tenant_id, edit=req
                ),
                summary="apply a DRAFT edit",
                start_to_close_timeout=SHORT,
                retry_policy=RETRY,
            )
        return self._result()

    @edit.validator
    def _validate_edit(self, req: EditRequest) -> None:
        self._require("edit")

    @workflow.update(name="discard")
    async def discard(self) -> TransitionResult:
        """DELETE of a DRAFT campaign: the workflow ends; the API removes the row."""
        async with self._lock:
            self._require("discard")
            self._state.discarded = True
            self._changed()
        return self._result()

    @discard.validator
    def _validate_discard(self) -> None:
        self._require("discard")

    # ---- signals (operators, parent workflows) ---------------------------------------------

    def _signal(self, action: Action, apply: Callable[[], None]) -> None:
        if not allows(action, self._state.status, self._state.discarded):
            workflow.logger.warning(
                "ignored %s signal: campaign %s is %s",
                action,
                self._input.campaign_id,
                self._state.status.value,
            )
            return
        apply()

    @workflow.signal(name="pause")
    def pause_signal(self) -> None:
        self._signal("pause", self._do_pause)

    @workflow.signal(name="resume")
    def resume_signal(self) -> None:
        self._signal("resume", self._do_resume)

    @workflow.signal(name="cancel")
    def cancel_signal(self) -> None:
        self._signal("cancel", self._do_cancel)

    # ---- queries -------------------------------------------------------------------------------

    @workflow.query(name="progress")
    def progress(self) -> CampaignProgress:
        return projections.progress(self._input, self._state, self._batch_running)
