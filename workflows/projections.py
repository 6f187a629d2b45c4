"""What the campaign workflow shows of its state: the Update answer, the `progress` query, the
Temporal UI's "current details" line and the search attributes.

Pure functions of the workflow input and state (no commands are issued here except the search
attribute upsert, which is itself deterministic), so the workflow class keeps only the lifecycle
and the loop.
"""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.constants import SA_CAMPAIGN_STATUS, SA_CAMPAIGN_TYPE, SA_CLUB_ID, SA_TENANT_ID
    from core.enums import CampaignStatus, CampaignType
    from core.messages import CampaignProgress, CampaignState, CampaignWorkflowInput, TransitionResult

S = CampaignStatus
T = CampaignType


def transition_result(inp: CampaignWorkflowInput, st: CampaignState) -> TransitionResult:
    """The answer of every lifecycle Update (the API returns it as the campaign's new state)."""
    return TransitionResult(
        id=inp.campaign_id,
        status=st.lifecycle.status,
        scheduled_at=st.lifecycle.scheduled_at,
        started_at=st.lifecycle.started_at,
        paused_at=st.lifecycle.paused_at,
        resumed_at=st.lifecycle.resumed_at,
        cancelled_at=st.lifecycle.cancelled_at,
        target_count=st.tally.target_count,
        sent_count=st.tally.sent_recipients,
        approved_by=st.lifecycle.approved_by,
        approved_at=st.lifecycle.approved_at,
    )


def progress(inp: CampaignWorkflowInput, st: CampaignState, batch_running: bool) -> CampaignProgress:
    """The `progress` query: live status and counts, also answered by a closed workflow."""
    return CampaignProgress(
        campaign_id=inp.campaign_id,
        status=st.lifecycle.status,
        target_count=st.tally.target_count,
        processed=st.tally.processed,
        sent_recipients=st.tally.sent_recipients,
        counts=st.tally.counts,
        snapshot_complete=st.run.snapshot_complete,
        batch_running=batch_running,
        scheduled_at=st.lifecycle.scheduled_at,
        last_error=st.lifecycle.last_error,
        held=st.policies.held,
        held_until=st.policies.held_until,
        expected_finish_at=st.tally.expected_finish_at,
    )


def details(kind: CampaignType, st: CampaignState) -> str:
    """Where the campaign stands, in plain words, for the Temporal UI's "current details"."""
    status, tally = st.lifecycle.status, st.tally
    if status == S.ACTIVE and kind == T.TRIGGERED:
        return (
            f"ACTIVE: sending on matching events; {tally.processed:,} processed, {tally.counts.sent:,} sent"
        )
    if status == S.ACTIVE and kind == T.RECURRING and not st.run.run_active:
        nxt = st.recurrence.next_run_at.isoformat() if st.recurrence.next_run_at else "none"
        return (
            f"ACTIVE: waiting for run {st.run.run_number + 1} at {nxt}; {st.recurrence.run_count} runs done"
        )
    if status == S.SCHEDULED and st.lifecycle.scheduled_at is not None:
        return f"SCHEDULED: sleeping until {st.lifecycle.scheduled_at.isoformat()}"
    if status in (S.ACTIVE, S.PAUSED) and (st.run.snapshot_complete or tally.target_count):
        return _sending_details(kind, st)
    done = f"; {tally.sent_recipients:,} recipients sent" if status.is_final else ""
    return f"{status.value}{done}"


def _sending_details(kind: CampaignType, st: CampaignState) -> str:
    """An ACTIVE or PAUSED campaign whose audience is known: the page it is at, what it sent."""
    status, tally, policies = st.lifecycle.status, st.tally, st.policies
    target = tally.target_count or 0
    run_target = target - tally.target_base
    total = -(-run_target // tally.page_size) if tally.page_size else "?"
    run = f" of run {st.run.run_number}" if kind == T.RECURRING else ""
    active = status == S.ACTIVE
    where = f"page {tally.pages + 1} of {total}{run}" if active else f"after page {tally.pages}"
    text = (
        f"{status.value}: sending {where} - {tally.sent_recipients:,} of {target:,} recipients sent"
        f" ({tally.processed:,} processed)"
    )
    if tally.expected_finish_at is not None and active:
        text += f"; expected to finish at {tally.expected_finish_at.isoformat()} at the rate limit"
    if policies.held and policies.held_until is not None:
        text += (
            f"; {policies.held:,} held until {policies.held_until.isoformat()} (local time or quiet hours)"
        )
    return text + (f"; last error: {st.lifecycle.last_error}" if st.lifecycle.last_error else "")


def upsert_search_attributes(inp: CampaignWorkflowInput, st: CampaignState) -> None:
    """Keep `CampaignStatus` (and its companions) current for the Temporal UI's filters.

    The time-skipping test server has no custom attributes: they are only kept current when the
    workflow was started with them (the API always does).
    """
    attrs = workflow.info().typed_search_attributes
    if attrs.get(SA_CAMPAIGN_STATUS) is None:
        return
    if attrs.get(SA_CAMPAIGN_STATUS) == st.lifecycle.status.value:
        return
    updates = [
        SA_CAMPAIGN_STATUS.value_set(st.lifecycle.status.value),
        SA_CAMPAIGN_TYPE.value_set(inp.type.value),
        SA_TENANT_ID.value_set(inp.tenant_id),
    ]
    if inp.club_id:
        updates.append(SA_CLUB_ID.value_set(inp.club_id))
    workflow.upsert_search_attributes(updates)
