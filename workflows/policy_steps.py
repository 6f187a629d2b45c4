"""The campaign's sending policies in the workflow: sweeps of the messages quiet hours held back,
and auto-pause (README "Sending policies").

A page's gates hold back the messages inside their recipients' quiet hours (the activity records
them); the page's result says when the earliest is due. Before a run finishes, the workflow sleeps
until then (a durable timer that a pause, cancel or edit interrupts) and sends the due ones in
sweeps, each page its own `send_held` activity; a TRIGGERED campaign sweeps between its drains.
Each page result also carries the auto-pause rule, and the workflow keeps the outcomes of its
latest pages to judge the failure rate over the rule's window.
"""

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from core.enums import CampaignStatus, CampaignType
    from core.messages import DecideInput, DecideResult, SendBatchResult, SendHeldInput
    from workflows.campaign_core import CampaignCore
    from workflows.options import BATCH_TIMEOUT, HEARTBEAT, RETRY, SHORT
    from workflows.page_window import halt_page

S = CampaignStatus
T = CampaignType

# Sends held messages before a run finishes, and judges auto-pause (older histories do neither).
PATCH_POLICIES = "sending-policies"
# Decides an A/B test's winner before its remainder is sent.
PATCH_EXPERIMENTS = "ab-test-decision"
# A page that stopped early (its time budget, a pause) reports what the provider answered, and the
# auto-pause rule judges those answers too (older histories judge completed pages only).
PATCH_INCOMPLETE_ANSWERS = "incomplete-page-answers"


class PolicySteps(CampaignCore):
    def _anchor(self) -> datetime | None:
        """When the send started (a RECURRING run: its slot): recipient-local delivery counts
        from here, so every page and sweep of the run computes the same instants."""
        st = self._state
        if self._input.type == T.RECURRING:
            return st.recurrence.last_slot
        return None if self._input.type == T.TRIGGERED else st.lifecycle.started_at

    def _take_in_policies(self, result: SendBatchResult) -> None:
        """Note what quiet hours held back, and pause when the failure rate over the latest
        messages passes the campaign's auto-pause rule (README "Sending policies")."""
        tally, policies = self._state.tally, self._state.policies
        if result.rate is not None:
            remaining = max(0, (tally.target_count or 0) - tally.processed)
            pace = timedelta(seconds=remaining / result.rate) if result.rate > 0 else None
            tally.expected_finish_at = None if pace is None else workflow.now() + pace
        if result.awaiting_winner:
            policies.ab_pending = True
        if result.held:
            policies.held += result.held
        if result.held_until is not None or result.held:
            policies.held_until = result.held_until
        self._judge_refusals(result)

    def _judge_refusals(self, result: SendBatchResult) -> None:
        """Pause when the failure rate over the latest messages passes the campaign's auto-pause
        rule: a page's answers go into the rule's window whether or not the page completed."""
        policies = self._state.policies
        rule = result.auto_pause
        if rule is None or not rule.enabled or not result.answered:
            return
        recent = policies.recent
        recent.append([result.answered, result.refused])
        while len(recent) > 1 and sum(m for m, _ in recent[1:]) >= rule.window:
            recent.pop(0)
        total = sum(m for m, _ in recent)
        failures = sum(f for _, f in recent)
        if (
            total >= rule.min_messages
            and failures > rule.failure_rate * total
            and self._state.lifecycle.status == S.ACTIVE
        ):
            self._pause_with(
                f"auto-paused: the provider refused {failures} of the last {total} messages (bounced or"
                f" failed: {failures / total:.0%}, over the {rule.failure_rate:.0%} threshold);"
                " resume to go on"
            )

    async def _wait_and_sweep(self, run_id: str) -> None:
        """The run's pages are done but quiet hours hold messages back: sleep until the earliest
        is due (a pause, cancel or edit wakes the loop), then send the due ones."""
        st = self._state
        if st.policies.held_until is not None and not await self._sleep_until(st.policies.held_until):
            return  # paused, cancelled or edited: decide again
        if st.lifecycle.status != S.ACTIVE:
            return
        if st.policies.ab_pending and workflow.patched(PATCH_EXPERIMENTS):
            await self._decide(None)
        await self._sweep(run_id)

    async def _decide(self, forced: str | None) -> None:
        """End an A/B test's test phase: the winner (the operator's pick, or by the numbers) is
        recorded, then the held remainder goes out with it (README "A/B tests")."""
        st = self._state
        result: DecideResult = await workflow.execute_activity(
            "decide_winner",
            DecideInput(
                campaign_id=self._input.campaign_id,
                tenant_id=self._input.tenant_id,
                forced=forced,
                now=workflow.now(),
            ),
            summary="decide the A/B test's winner" if forced is None else f"operator picks variant {forced}",
            result_type=DecideResult,
            start_to_close_timeout=SHORT,
            retry_policy=RETRY,
        )
        st.policies.ab_pending = False
        st.policies.ab_winner = result.winner
        self._changed()

    async def _sweep(self, run_id: str) -> None:
        """One page of held messages that are due, as its own activity; a pause halts it like
        any page, and the next sweep takes the same messages again."""
        st = self._state
        self._batch_running = True
        try:
            handle: asyncio.Future[SendBatchResult] = workflow.start_activity(
                "send_held",
                SendHeldInput(
                    campaign_id=self._input.campaign_id,
                    tenant_id=self._input.tenant_id,
                    run_id=run_id,
                    epoch=st.lifecycle.epoch,
                    sweep=st.policies.sweep,
                    now=workflow.now(),
                    anchor=self._anchor(),
                ),
                summary=f"send the messages quiet hours held (sweep {st.policies.sweep})",
                result_type=SendBatchResult,
                start_to_close_timeout=BATCH_TIMEOUT,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=RETRY,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            result = await self._until_done_or_halted(handle, run_id, st.lifecycle.epoch)
        except ActivityError as err:
            self._pause_on_error(err)
            return
        finally:
            self._batch_running = False
        if result is None or not result.page_complete:
            return  # halted: the next sweep (same number) takes the same messages again
        tally, policies = st.tally, st.policies
        policies.sweep += 1
        tally.counts = tally.counts.plus(result.counts)
        tally.sent_recipients = max(tally.sent_recipients, result.sent_recipients)
        policies.held = max(
            0,
            policies.held
            - (
                result.counts.sent
                + result.counts.skipped
                + result.counts.failed
                + result.counts.bounced
                + result.counts.unknown
            ),
        )
        policies.held_until = result.held_until
        if policies.held_until is None:
            policies.held = 0
        self._take_in_policies(result.model_copy(update={"held": 0, "held_until": policies.held_until}))
        self._changed()

    async def _until_done_or_halted(
        self, handle: "asyncio.Future[SendBatchResult]", run_id: str, epoch: int
    ) -> SendBatchResult | None:
        """Wait for a page; on pause or cancel halt it and take what it returns (None: cancelled
        before it ran)."""
        stop = asyncio.ensure_future(workflow.wait_condition(self._not_active))
        waiting: list[asyncio.Future[Any]] = [handle, stop]
        await workflow.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if handle.done():
            stop.cancel()
            return await handle
        await halt_page(run_id, epoch, handle, "halt the running sweep (pause/cancel)")
        try:
            return await handle
        except ActivityError as err:
            if not isinstance(err.cause, CancelledError):
                raise
            return None
