"""The campaign workflow's state, and the steps every part of it uses.

`CampaignCore` holds what one workflow run knows (the input, the state carried across
continue-as-new, the page window in flight) and the steps shared by the lifecycle handlers
(workflows/campaign.py) and the send loop (workflows/campaign_runs.py): marking a change, writing
the read model, pausing on a step that cannot succeed, completing, and the next RECURRING slot.
"""

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core.constants import (
        ERR_CAMPAIGN_INVALID,
    )
    from core.enums import CampaignStatus, CampaignType
    from core.messages import (
        CampaignState,
        CampaignWorkflowInput,
        NextRunInput,
        NextRunResult,
        SyncCampaignInput,
    )
    from workflows import projections
    from workflows.options import RETRY, SHORT
    from workflows.page_window import PageWindow
    from workflows.transitions import invalid

S = CampaignStatus
T = CampaignType


class CampaignCore:
    def __init__(self, input: CampaignWorkflowInput) -> None:
        self._input = input
        self._state = input.state.model_copy(deep=True) if input.state else CampaignState()
        self._synced_version = 0 if input.state is None else self._state.lifecycle.version - 1
        self._batch_running = False
        self._lock = asyncio.Lock()
        self._batches_this_run = 0
        # Pages of the window in flight, by their upper bound.
        self._window = PageWindow()
        # A RECURRING run just finished: continue-as-new so history never grows with runs.
        self._run_finished = False

    # ---- read model & search attributes -----------------------------------------------------

    def _changed(self) -> None:
        self._state.lifecycle.version += 1

    async def _sync(self) -> None:
        """Write the state to the Postgres read model and the search attributes, once per change."""
        while self._synced_version < self._state.lifecycle.version:
            version = self._state.lifecycle.version
            projections.upsert_search_attributes(self._input, self._state)
            workflow.set_current_details(projections.details(self._input.type, self._state))
            await workflow.execute_activity(
                "sync_campaign",
                SyncCampaignInput(campaign_id=self._input.campaign_id, version=version, state=self._state),
                summary=f"read model: {self._state.lifecycle.status.value} (v{version})",
                start_to_close_timeout=SHORT,
                retry_policy=RETRY,
            )
            self._synced_version = max(self._synced_version, version)

    async def _sleep_until(self, at: datetime) -> bool:
        """A durable timer to `at` that any change of state (pause, cancel, edit, reschedule)
        interrupts: True when `at` came, False when a change woke the loop first."""
        remaining = (at - workflow.now()).total_seconds()
        if remaining <= 0:
            return True
        version = self._state.lifecycle.version
        try:
            await workflow.wait_condition(
                lambda: self._state.lifecycle.version != version, timeout=timedelta(seconds=remaining)
            )
        except TimeoutError:
            return True
        return False

    def _not_active(self) -> bool:
        """The campaign left ACTIVE (paused, cancelled): what a page in flight is raced against."""
        return self._state.lifecycle.status != S.ACTIVE

    async def _wait_settled(self) -> None:
        """Return once no batch runs and the read model shows the current state."""
        await workflow.wait_condition(lambda: not self._batch_running)
        version = self._state.lifecycle.version
        await workflow.wait_condition(lambda: self._synced_version >= version)

    async def _next_run(self, after: datetime) -> datetime | None:
        """Local times in the schedule's zone, resolved in a local activity (so replay does not
        depend on the tz database the worker has then)."""
        if self._state.recurrence.schedule is None:
            raise invalid("only a RECURRING campaign has a next run", {}, kind=ERR_CAMPAIGN_INVALID)
        result: NextRunResult = await workflow.execute_local_activity(
            "next_run_time",
            NextRunInput(schedule=self._state.recurrence.schedule, after=after),
            result_type=NextRunResult,
            start_to_close_timeout=timedelta(seconds=10),
        )
        return result.at

    def _skip_missed_slots(self) -> datetime:
        """Where the next RECURRING slot is looked for: after the latest run's slot and never
        before now, so slots that passed while paused (or while a long run sent) are skipped."""
        last = self._state.recurrence.last_slot
        return workflow.now() if last is None else max(last, workflow.now())

    def _complete(self) -> None:
        if self._state.lifecycle.status == S.ACTIVE:
            self._state.lifecycle.status = S.COMPLETED
            self._state.lifecycle.completed_at = workflow.now()
            self._state.recurrence.next_run_at = None
            self._changed()

    def _pause_on_error(self, err: ActivityError) -> None:
        """A step that cannot succeed (e.g. its template vanished) pauses the campaign with the
        reason instead of failing the workflow; an operator can fix and resume."""
        self._pause_with(str(err.cause or err))

    def _pause_with(self, reason: str) -> None:
        """Pause the campaign by itself, saying why in `lastError`; only a person resumes it."""
        st = self._state
        st.lifecycle.last_error = reason
        workflow.logger.error("pausing campaign: %s", st.lifecycle.last_error)
        if st.lifecycle.status == S.ACTIVE:
            st.lifecycle.status = S.PAUSED
            st.lifecycle.paused_at = workflow.now()
            st.recurrence.next_run_at = None
            st.lifecycle.epoch += 1
            self._changed()
