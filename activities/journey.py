"""Activities of journey sends (CampaignSendWorkflow) and of the reference JourneyWorkflow.

A journey child send is one JOURNEY run (`<campaign>.j<digest of send_key>`): its audience is
snapshotted once into `run_recipients`, then the ordinary `send_batch` pages send it under the
ledger's rules, so a retried or restarted child never sends a message twice.
"""

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from activities.lifecycle import LifecycleActivities
from core.constants import ERR_CAMPAIGN_INVALID
from core.enums import CampaignType
from core.journey_messages import (
    Engagement,
    EngagementInput,
    EventSeenInput,
    PrepareSendInput,
    PrepareSendResult,
    RunSummary,
    RunSummaryInput,
)
from core.messages import CheckCampaignInput
from db.audience import member_ids_after
from db.campaign_state import campaign_setup
from db.events import event_seen
from db.ledger import reads, runs
from db.segments import load_segment

MAX_LISTED_CUSTOMERS = 10_000
SENT_IDS_SHOWN = 1_000


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type=ERR_CAMPAIGN_INVALID, non_retryable=True)


class JourneyActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="prepare_journey_send")
    async def prepare_journey_send(self, inp: PrepareSendInput) -> PrepareSendResult:
        """Check the campaign, then snapshot the audience of this send (once per send_key)."""
        engine = self._deps.engine
        async with engine.connect() as conn:
            campaign = await campaign_setup(conn, inp.campaign_id, inp.tenant_id)
            if campaign is None:
                raise _invalid("campaign not found in this tenant")
            if campaign.type != CampaignType.JOURNEY.value:
                raise _invalid(f"a journey can send only JOURNEY campaigns, not {campaign.type}")
            done = await runs.completed_target(conn, inp.run_id)
        if done is not None:
            return PrepareSendResult(target_count=done)
        check = await LifecycleActivities(self._deps).check_campaign(
            CheckCampaignInput(campaign_id=inp.campaign_id, tenant_id=inp.tenant_id)
        )
        if not check.ok:
            raise _invalid("campaign cannot be sent: " + "; ".join(check.problems))
        audience = inp.audience
        if audience.customer_ids is None and not audience.segment:
            raise _invalid("the audience names no customers and no segment")
        if audience.customer_ids is not None and len(audience.customer_ids) > MAX_LISTED_CUSTOMERS:
            raise _invalid(f"at most {MAX_LISTED_CUSTOMERS} listed customers; use the segment")
        async with engine.begin() as conn:
            await runs.create_run(
                conn, inp.run_id, inp.campaign_id, inp.tenant_id, kind="JOURNEY", source_id=inp.send_key[:200]
            )
            if audience.customer_ids is not None:
                await runs.add_recipients(conn, inp.run_id, sorted(set(audience.customer_ids)))
            else:
                segment_id = campaign.segment_id
                segment = await load_segment(conn, inp.tenant_id, segment_id) if segment_id else None
                if segment is None:
                    raise _invalid("the campaign has no segment in this tenant")
                after: str | None = None
                chunk = self._deps.settings.snapshot_chunk_size
                while True:
                    ids = await member_ids_after(conn, segment, after, chunk)
                    if ids:
                        await runs.add_recipients(conn, inp.run_id, ids)
                        after = ids[-1]
                    activity.heartbeat(after)
                    if len(ids) < chunk:
                        break
            target = await runs.complete_snapshot(conn, inp.run_id)
        return PrepareSendResult(target_count=target)

    @activity.defn(name="run_summary")
    async def run_summary(self, inp: RunSummaryInput) -> RunSummary:
        async with self._deps.engine.connect() as conn:
            tally = await reads.run_tally(conn, inp.run_id)
            sent = await reads.sent_customer_ids(conn, inp.run_id, SENT_IDS_SHOWN)
        # A row still PENDING (the send is still answering it) counts as unknown.
        return RunSummary(counts=tally.counts(), sent_customer_ids=sent)

    @activity.defn(name="customer_engagement")
    async def customer_engagement(self, inp: EngagementInput) -> Engagement:
        """Did the customer open or click this campaign's message (of this run, if named)?"""
        async with self._deps.engine.connect() as conn:
            types = await reads.engagement_types(conn, inp.campaign_id, inp.customer_id, inp.run_id)
        return Engagement(opened="OPENED" in types or "CLICKED" in types, clicked="CLICKED" in types)

    @activity.defn(name="customer_event_seen")
    async def customer_event_seen(self, inp: EventSeenInput) -> bool:
        async with self._deps.engine.connect() as conn:
            return await event_seen(conn, inp.tenant_id, inp.customer_id, inp.event_type, inp.since)
