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
        status=st.status,
        scheduled_at=st.scheduled_at,
        started_at=st.started_at,
        paused_at=st.paused_at,
        resumed_at=st.resumed_at,
        cancelled_at=st.cancelled_at,
        target_count=st.target_count,
        sent_count=st.sent_recipients,
        approved_by=st.approved_by,
        approved_at=st.approved_at,
    )


def progress(inp: CampaignWorkflowInput, st: CampaignState, batch_running: bool) -> CampaignProgress:
    """The `progress` query: live status and counts, also answered by a closed workflow."""
    return CampaignProgress(
        campaign_id=inp.campaign_id,
        status=st.status,
        target_count=st.target_count,
        processed=st.processed,
        sent_recipients=st.sent_recipients,
        counts=st.counts,
        snapshot_complete=st.snapshot_complete,
        batch_running=batch_running,
        scheduled_at=st.scheduled_at,
        last_error=st.last_error,
        held=st.held,
        held_until=st.held_until,
        expected_finish_at=st.expected_finish_at,
    )


def details(kind: CampaignType, st: CampaignState) -> str:
    """Where the campaign stands, in plain words, for the Temporal UI's "current details"."""
    status = st.status.value
    if st.status == S.ACTIVE and kind == T.TRIGGERED:
        return f"ACTIVE: sending on matching events; {st.processed:,} processed, {st.counts.sent:,} sent"
    if st.status == S.ACTIVE and kind == T.RECURRING and not st.run_active:
        nxt = st.next_run_at.isoformat() if st.next_run_at else "none"
        return f"ACTIVE: waiting for run {st.run_number + 1} at {nxt}; {st.run_count} runs done"
    if st.status == S.SCHEDULED and st.scheduled_at is not None:
        return f"SCHEDULED: sleeping until {st.scheduled_at.isoformat()}"
    if st.status in (S.ACTIVE, S.PAUSED) and (st.snapshot_complete or st.target_count):
        return _sending_details(kind, st)
    done = f"; {st.sent_recipients:,} recipients sent" if st.status.is_final else ""
    return f"{status}{done}"


def _sending_details(kind: CampaignType, st: CampaignState) -> str:
    """An ACTIVE or PAUSED campaign whose audience is known: the page it is at, what it sent."""
    target = st.target_count or 0
    run_target = target - st.target_base
    total = -(-run_target // st.page_size) if st.page_size else "?"
    run = f" of run {st.run_number}" if kind == T.RECURRING else ""
    active = st.status == S.ACTIVE
    where = f"page {st.pages + 1} of {total}{run}" if active else f"after page {st.pages}"
    text = (
        f"{st.status.value}: sending {where} - {st.sent_recipients:,} of {target:,} recipients sent"
        f" ({st.processed:,} processed)"
    )
    if st.expected_finish_at is not None and active:
        text += f"; expected to finish at {st.expected_finish_at.isoformat()} at the rate limit"
    if st.held and st.held_until is not None:
        text += f"; {st.held:,} held until {st.held_until.isoformat()} (local time or quiet hours)"
    return text + (f"; last error: {st.last_error}" if st.last_error else "")


def upsert_search_attributes(inp: CampaignWorkflowInput, st: CampaignState) -> None:
    """Keep `CampaignStatus` (and its companions) current for the Temporal UI's filters.

    The time-skipping test server has no custom attributes: they are only kept current when the
    workflow was started with them (the API always does).
    """
    attrs = workflow.info().typed_search_attributes
    if attrs.get(SA_CAMPAIGN_STATUS) is None:
        return
    if attrs.get(SA_CAMPAIGN_STATUS) == st.status.value:
        return
    updates = [
        SA_CAMPAIGN_STATUS.value_set(st.status.value),
        SA_CAMPAIGN_TYPE.value_set(inp.type.value),
        SA_TENANT_ID.value_set(inp.tenant_id),
    ]
    if inp.club_id:
        updates.append(SA_CLUB_ID.value_set(inp.club_id))
    workflow.upsert_search_attributes(updates)
