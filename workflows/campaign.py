"""CampaignWorkflow: the durable lifecycle of one campaign (README "Lifecycle and operators").

Handlers only change state; the main loop does the work (snapshot, batched sends, read-model
sync). Lifecycle calls that need an answer are Updates whose validators refuse illegal
transitions before anything reaches history; `pause`, `resume` and `cancel` also exist as signals
for operators and parent workflows, and those ignore (and log) what is illegal.
"""

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from core.constants import (
        ERR_CAMPAIGN_INVALID,
        ERR_ILLEGAL_TRANSITION,
        run_id_for,
    )
    from core.enums import CampaignStatus, CampaignType
    from core.messages import (
        ApplyEditInput,
        ApprovalRequest,
        CampaignProgress,
        CampaignWorkflowInput,
        CheckCampaignInput,
        CheckCampaignResult,
        CloseTriggersInput,
        Counts,
        EditRequest,
        LedgerCountsInput,
        ScheduleRequest,
        TransitionResult,
        WinnerRequest,
    )
    from workflows import projections
    from workflows.campaign_runs import RunSteps
    from workflows.options import RETRY, SHORT
    from workflows.transitions import Action, allows, invalid, require

S = CampaignStatus
T = CampaignType

# The final counts come from the ledger (older histories keep their page counts).
PATCH_LEDGER_RECOUNT = "ledger-recount"


@workflow.defn(name="CampaignWorkflow")
class CampaignWorkflow(RunSteps):
    @workflow.init
    def __init__(self, input: CampaignWorkflowInput) -> None:
        super().__init__(input)

    # ---- main loop ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: CampaignWorkflowInput) -> CampaignProgress:
        while True:
            await self._sync()
            if (self._window or self._snapshot) and self._state.lifecycle.status != S.ACTIVE:
                # Paused or cancelled while pages (or a snapshot chunk) were in flight (also
                # during the sync above).
                await self._drain_window(run_id_for(self._input.campaign_id, self._state.run.run_number))
                continue
            status = self._state.lifecycle.status
            if self._state.lifecycle.discarded or status.is_final:
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
                if not self._state.lifecycle.discarded and not self._state.lifecycle.status.is_final:
                    # Everything the next run needs travels in its input (handlers' update ids
                    # do not carry over; the state does).
                    workflow.continue_as_new(input.model_copy(update={"state": self._state}))
        if self._input.type == T.TRIGGERED and not self._state.lifecycle.discarded:
            # Events still queued for a finished campaign will never be sent: say so in the queue.
            await workflow.execute_activity(
                "close_triggers",
                CloseTriggersInput(campaign_id=self._input.campaign_id),
                summary="close the queue of events not sent",
                start_to_close_timeout=SHORT,
                retry_policy=RETRY,
            )
        if not self._state.lifecycle.discarded and workflow.patched(PATCH_LEDGER_RECOUNT):
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
            if counts != self._state.tally.counts:
                self._state.tally.counts = counts
                self._changed()
        await self._sync()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._sync()
        return self.progress()

    async def _wait_for_change(self) -> None:
        version = self._state.lifecycle.version
        await workflow.wait_condition(lambda: self._state.lifecycle.version != version)

    async def _sleep_until_scheduled(self) -> None:
        at = self._state.lifecycle.scheduled_at
        if at is None:
            raise invalid("a SCHEDULED campaign has no scheduledAt", {}, kind=ERR_CAMPAIGN_INVALID)
        # A reschedule or cancel bumps the version and wakes us at once.
        if not await self._sleep_until(at):
            return
        if self._state.lifecycle.status == S.SCHEDULED and self._state.lifecycle.scheduled_at == at:
            self._state.lifecycle.status = S.ACTIVE
            self._state.lifecycle.started_at = workflow.now()
            self._changed()

    # ---- lifecycle -----------------------------------------------------------------------------

    def _require(self, action: Action) -> None:
        require(action, self._state.lifecycle.status, self._state.lifecycle.discarded)

    def _require_sendable_type(self, action: str) -> None:
        if self._input.type == T.JOURNEY:
            raise ApplicationError(
                f"cannot {action} a JOURNEY campaign: journeys send it as a child workflow",
                {"status": self._state.lifecycle.status.value, "action": action},
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
            self._state.tally.target_count = check.segment_size
        else:
            self._state.tally.target_count = 0
        self._state.recurrence.schedule = check.schedule

    def _result(self) -> TransitionResult:
        return projections.transition_result(self._input, self._state)

    @workflow.update(name="schedule")
    async def schedule(self, req: ScheduleRequest) -> TransitionResult:
        async with self._lock:
            self._require("schedule")
            check = await self._check()
            self._require("schedule")
            self._state.lifecycle.status = S.SCHEDULED
            self._state.lifecycle.scheduled_at = req.scheduled_at
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
            self._state.lifecycle.status = S.ACTIVE
            self._state.lifecycle.started_at = workflow.now()
            self._adopt(check)
            if self._state.recurrence.schedule is not None:
                # Shown at once (GET right after execute); the main loop computes the same.
                self._state.recurrence.next_run_at = await self._next_run(workflow.now())
            self._changed()
        version = self._state.lifecycle.version
        await workflow.wait_condition(lambda: self._synced_version >= version)
        return self._result()

    @execute.validator
    def _validate_execute(self) -> None:
        self._require_sendable_type("execute")
        self._require("execute")

    def _do_pause(self) -> None:
        life = self._state.lifecycle
        life.status = S.PAUSED
        life.paused_at = workflow.now()
        self._state.recurrence.next_run_at = None  # nothing is planned while paused
        life.epoch += 1
        self._changed()

    def _do_resume(self) -> None:
        life = self._state.lifecycle
        life.status = S.ACTIVE
        life.resumed_at = workflow.now()
        life.last_error = None
        self._state.policies.recent = []  # a person resumed: auto-pause judges messages from here on
        self._changed()

    def _do_cancel(self) -> None:
        life = self._state.lifecycle
        life.status = S.CANCELLED
        life.cancelled_at = workflow.now()
        life.epoch += 1
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
        if st.recurrence.schedule is not None and not st.run.run_active:
            # Runs whose time passed while paused are skipped: the next one is after now.
            st.recurrence.next_run_at = await self._next_run(self._skip_missed_slots())
            self._changed()
        version = self._state.lifecycle.version
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
            self._state.lifecycle.discarded = True
            self._changed()
        return self._result()

    @discard.validator
    def _validate_discard(self) -> None:
        self._require("discard")

    @workflow.update(name="approve")
    async def approve(self, req: ApprovalRequest) -> TransitionResult:
        """Record (or, after an edit, withdraw) the approval, and show it in the memo so the
        Temporal UI tells who approved the send (README "Approvals")."""
        self._require("approve")
        life = self._state.lifecycle
        life.approved_by = req.by
        life.approved_at = workflow.now() if req.by else None
        approved_at = life.approved_at.isoformat() if life.approved_at else None
        workflow.upsert_memo({"approvedBy": req.by, "approvedAt": approved_at})
        return self._result()

    @approve.validator
    def _validate_approve(self, req: ApprovalRequest) -> None:
        self._require_sendable_type("approve")
        self._require("approve")

    @workflow.update(name="pick_winner")
    async def pick_winner(self, req: WinnerRequest) -> TransitionResult:
        """An operator ends the A/B test early: the held remainder goes out with this variant
        at once (or on resume, when paused)."""
        async with self._lock:
            self._require("winner")
            self._require_pending_test(req)
            await self._decide(req.variant)
            self._state.policies.held_until = workflow.now()
        return self._result()

    @pick_winner.validator
    def _validate_pick_winner(self, req: WinnerRequest) -> None:
        self._require("winner")
        self._require_pending_test(req)

    def _require_pending_test(self, req: WinnerRequest) -> None:
        if not self._state.policies.ab_pending:
            raise ApplicationError(
                "the campaign has no A/B test waiting for its winner",
                {"status": self._state.lifecycle.status.value, "action": "pick the winner of"},
                type=ERR_ILLEGAL_TRANSITION,
                non_retryable=True,
            )
        if req.variant not in ("A", "B", "C", "D"):
            raise ApplicationError(
                f"unknown variant {req.variant!r}",
                {"field": "variant"},
                type=ERR_CAMPAIGN_INVALID,
                non_retryable=True,
            )

    # ---- signals (operators, parent workflows) ---------------------------------------------

    def _signal(self, action: Action, apply: Callable[[], None]) -> None:
        if not allows(action, self._state.lifecycle.status, self._state.lifecycle.discarded):
            workflow.logger.warning(
                "ignored %s signal: campaign %s is %s",
                action,
                self._input.campaign_id,
                self._state.lifecycle.status.value,
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
