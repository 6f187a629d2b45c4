"""The audience snapshot of a run in the workflow: chunk after chunk, while the first pages send.

The snapshot is taken in chunks (activities/snapshot.py), each one activity, in customer id order.
Older histories took the whole snapshot before planning a page. Under PATCH_SNAPSHOT_OVERLAP the
next chunk runs while the pages of the chunks already taken send: a large audience no longer waits
seconds (a million recipients: about half a minute) for its first message (README "Pages while
the snapshot is taken"). The snapshot's CPU is the same; on a box the sending already keeps busy,
the run as a whole is not faster for it.

What keeps a page from missing anyone: pages are planned only up to the last chunk whose result
the workflow has (`snapshot_cursor`). A chunk is final once it has returned: the next one starts
after it, and only an unreturned chunk can be retried, and then only adds recipients above the
cursor. While the snapshot is being taken, only whole pages are planned (the partial last page
waits for the next chunk), a window's worth at a time, sized by what the snapshot holds so far
(a lower bound of the run's size): pages grow as the snapshot does.

The chunk in flight is short (one chunk of `snapshot_chunk_size` ids): a pause, a cancel or a due
continue-as-new waits for it to return, takes it in, and starts no new one.
"""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core.enums import CampaignStatus
    from core.messages import SnapshotInput, SnapshotResult
    from workflows.options import RETRY
    from workflows.policy_steps import PolicySteps

S = CampaignStatus

# Sends a run as a window of planned pages (older histories replay page by page).
PATCH_PAGE_WINDOW = "page-window"
# Pages send while the rest of the snapshot is taken (older histories snapshot everything first).
PATCH_SNAPSHOT_OVERLAP = "snapshot-overlap"
SNAPSHOT_TIMEOUT = timedelta(minutes=5)


class SnapshotSteps(PolicySteps):
    # The chunk in flight (PATCH_SNAPSHOT_OVERLAP), and the snapshot cursor the last plan was cut
    # up to (a new chunk is news to plan). Neither is state: both restart empty after a
    # continue-as-new, which waits for the chunk in flight first.
    _snapshot: "asyncio.Future[SnapshotResult] | None" = None
    _planned_upto: str | None = None
    # Recipients the chunks taken in this execution added: what sizes pages until the run's size
    # is known (a lower bound of it).
    _snapshotted = 0
    # What workflow.patched(PATCH_PAGE_WINDOW) said (None: not asked yet in this execution).
    _windowed: bool | None = None

    def _pages_windowed(self) -> bool:
        """Whether the run's pages are sent as a window (older histories: one after another)."""
        self._windowed = workflow.patched(PATCH_PAGE_WINDOW)
        return self._windowed

    def _snapshot_input(self, run_id: str) -> SnapshotInput:
        st = self._state
        return SnapshotInput(
            campaign_id=self._input.campaign_id,
            tenant_id=self._input.tenant_id,
            run_id=run_id,
            run_number=st.run.run_number,
            after=st.run.snapshot_cursor,
        )

    def _chunk(self, run_id: str) -> "asyncio.Future[SnapshotResult]":
        """The next chunk's activity (the same command whether it is awaited at once or not)."""
        st = self._state
        return workflow.start_activity(
            "snapshot_audience",
            self._snapshot_input(run_id),
            summary=f"snapshot run {st.run.run_number} (after {st.run.snapshot_cursor or 'start'})",
            result_type=SnapshotResult,
            start_to_close_timeout=SNAPSHOT_TIMEOUT,
            retry_policy=RETRY,
        )

    async def _snapshot_chunk(self, run_id: str) -> None:
        """Older histories: take one chunk and wait for it; pages start once all are taken."""
        await self._take_snapshot(self._chunk(run_id))

    async def _take_snapshot(self, handle: "asyncio.Future[SnapshotResult]") -> None:
        """Wait for a chunk and take in where the snapshot stands."""
        try:
            snap = await handle
        except ActivityError as err:
            # E.g. the segment was deleted since the check (weeks, for a RECURRING campaign):
            # pause with the reason instead of failing the workflow.
            self._pause_on_error(err)
            return
        st = self._state
        self._snapshotted += snap.inserted
        st.run.snapshot_cursor = snap.last_customer_id
        if snap.done:
            st.run.snapshot_complete = True
            st.tally.target_count = st.tally.target_base + snap.target_count
            self._changed()

    def _overlaps(self) -> bool:
        """Whether this run's pages may send while its snapshot is taken: never in an execution
        that already sends its pages one after another (only a window sends during a snapshot)."""
        return self._windowed is not False and workflow.patched(PATCH_SNAPSHOT_OVERLAP)

    def _start_snapshot(self, run_id: str) -> None:
        """Start the next chunk unless one is in flight, the snapshot is whole, or the loop must
        stop starting work (not ACTIVE, or a continue-as-new is due)."""
        st = self._state
        if self._snapshot is not None or st.run.snapshot_complete or st.lifecycle.status != S.ACTIVE:
            return
        if self._can_due():  # nothing new starts; the continue-as-new goes on from the cursor
            return
        self._snapshot = self._chunk(run_id)
        self._batch_running = True

    async def _collect_snapshot(self, *, wait: bool = False) -> None:
        """Take in the chunk in flight once it returned (`wait`: wait for it first)."""
        handle = self._snapshot
        if handle is None:
            return
        if wait:
            await workflow.wait_condition(handle.done)
        if not handle.done():
            return
        self._snapshot = None
        await self._take_snapshot(handle)

    def _snapshot_news(self) -> bool:
        """The snapshot is whole, or a chunk returned since the last plan (there may be more
        whole pages to plan)."""
        st = self._state
        if st.run.snapshot_complete:
            return True
        return st.run.snapshot_cursor is not None and st.run.snapshot_cursor != self._planned_upto

    def _can_due(self) -> bool:
        """A continue-as-new is due: start no new page nor chunk, let those in flight return."""
        return (
            self._run_finished
            or self._batches_this_run >= self._input.batches_per_run
            or workflow.info().is_continue_as_new_suggested()
        )
