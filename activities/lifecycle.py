"""Activities behind lifecycle transitions: the pre-send check, read-model sync, edits, halts."""

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from core.constants import ERR_CAMPAIGN_INVALID
from core.enums import CampaignType, Channel
from core.messages import (
    ApplyEditInput,
    CheckCampaignInput,
    CheckCampaignResult,
    Counts,
    FinishRunInput,
    HaltInput,
    LedgerCountsInput,
    NextRunInput,
    NextRunResult,
    SyncCampaignInput,
)
from core.recurrence import RecurringSchedule, next_run_after
from db import campaign_state, rollups
from db.audience import segment_size
from db.ledger import outcomes, reads, runs
from db.segments import load_segment
from db.templates import template_channel


class LifecycleActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="check_campaign")
    async def check_campaign(self, inp: CheckCampaignInput) -> CheckCampaignResult:
        """The pre-send check: a campaign that cannot be sent (no segment, channel or template it can
        use) is refused up front, before anything is snapshotted or sent."""
        async with self._deps.engine.connect() as conn:
            campaign = await campaign_state.campaign_setup(conn, inp.campaign_id, inp.tenant_id)
            if campaign is None:
                return CheckCampaignResult(ok=False, problems=["campaign not found"])
            problems: list[str] = []
            size = 0
            kind = CampaignType(campaign.type)
            schedule = None
            if kind == CampaignType.RECURRING:
                if campaign.schedule is None:
                    problems.append("schedule: a RECURRING campaign needs a schedule")
                else:
                    schedule = RecurringSchedule.model_validate(campaign.schedule)
            if kind == CampaignType.TRIGGERED:
                if not campaign.trigger_event:
                    problems.append("triggerEvent: a TRIGGERED campaign needs a trigger event")
            elif not campaign.segment_id:
                if kind != CampaignType.JOURNEY:
                    problems.append("segmentId: the campaign has no segment")
            else:
                seg = await load_segment(conn, inp.tenant_id, campaign.segment_id)
                if seg is None:
                    problems.append("segmentId: segment not found in this tenant")
                else:
                    size = await segment_size(conn, seg)
            if not campaign.channels:
                problems.append("channels: at least one channel is required")
            for channel, api_field, template_id in (
                (Channel.EMAIL, "emailTemplateId", campaign.email_template_id),
                (Channel.SMS, "smsTemplateId", campaign.sms_template_id),
            ):
                if channel not in campaign.channels:
                    continue
                if not template_id:
                    problems.append(f"{api_field}: channel {channel} needs a template")
                    continue
                found = await template_channel(conn, inp.tenant_id, template_id)
                if found is None:
                    problems.append(f"{api_field}: template not found in this tenant")
                elif found != channel:
                    problems.append(f"{api_field}: template is for channel {found}")
        return CheckCampaignResult(ok=not problems, problems=problems, segment_size=size, schedule=schedule)

    @activity.defn(name="next_run_time")
    async def next_run_time(self, inp: NextRunInput) -> NextRunResult:
        """Local activity: the recurrence needs the tz database, which is not workflow state."""
        return NextRunResult(at=next_run_after(inp.schedule, inp.after))

    @activity.defn(name="sync_campaign")
    async def sync_campaign(self, inp: SyncCampaignInput) -> None:
        """Write the workflow's state into the read model; an older version never overwrites."""
        async with self._deps.engine.begin() as conn:
            await campaign_state.write_state(conn, inp.campaign_id, inp.version, inp.state)

    @activity.defn(name="apply_edit")
    async def apply_edit(self, inp: ApplyEditInput) -> None:
        if "channels" in inp.edit.fields_set and inp.edit.channels is None:
            raise ApplicationError("channels cannot be null", type=ERR_CAMPAIGN_INVALID, non_retryable=True)
        async with self._deps.engine.begin() as conn:
            await campaign_state.apply_edit(conn, inp.campaign_id, inp.tenant_id, inp.edit)

    @activity.defn(name="close_ledger")
    async def close_ledger(self, inp: LedgerCountsInput) -> Counts:
        """A finished campaign's outcomes as the ledger holds them (every run, every channel).

        Nothing sends for it any more, so a row still PENDING (a page cut off by a cancel that
        its grace period did not cover) may have gone out: it becomes UNKNOWN, never resent. Such
        a page also never rolled up what it recorded: the roll-up here counts it (exactly once)."""
        async with self._deps.engine.begin() as conn:
            await outcomes.mark_campaign_orphans_unknown(conn, inp.campaign_id)
            await rollups.roll_up(conn, campaign_id=inp.campaign_id)
            tally = await reads.campaign_tally(conn, inp.campaign_id)
        return tally.counts()

    @activity.defn(name="halt_run")
    async def halt_run(self, inp: HaltInput) -> None:
        """Tell the batch started with `epoch` to start no new message (pause/cancel)."""
        async with self._deps.engine.begin() as conn:
            await runs.raise_halt(conn, inp.run_id, inp.epoch)

    @activity.defn(name="finish_run")
    async def finish_run(self, inp: FinishRunInput) -> None:
        async with self._deps.engine.begin() as conn:
            await runs.finish_run(conn, inp.run_id)
