"""Activities behind lifecycle transitions: the pre-send check, read-model sync, edits, halts."""

from datetime import UTC, datetime

from sqlalchemy import select, update
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
from db import rollups
from db.audience import load_segment, segment_size
from db.ledger import outcomes, reads, runs
from db.models import Campaign, Template


class LifecycleActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="check_campaign")
    async def check_campaign(self, inp: CheckCampaignInput) -> CheckCampaignResult:
        """The pre-send check: a campaign that cannot be sent (no segment, channel or template it can
        use) is refused up front, before anything is snapshotted or sent."""
        async with self._deps.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(Campaign.__table__).where(
                        Campaign.id == inp.campaign_id, Campaign.tenant_id == inp.tenant_id
                    )
                )
            ).first()
            if row is None:
                return CheckCampaignResult(ok=False, problems=["campaign not found"])
            c = row._mapping
            problems: list[str] = []
            size = 0
            kind = CampaignType(c["type"])
            schedule = None
            if kind == CampaignType.RECURRING:
                if c["schedule"] is None:
                    problems.append("schedule: a RECURRING campaign needs a schedule")
                else:
                    schedule = RecurringSchedule.model_validate(c["schedule"])
            if kind == CampaignType.TRIGGERED:
                if not c["trigger_event"]:
                    problems.append("triggerEvent: a TRIGGERED campaign needs a trigger event")
            elif not c["segment_id"]:
                if kind != CampaignType.JOURNEY:
                    problems.append("segmentId: the campaign has no segment")
            else:
                seg = await load_segment(conn, inp.tenant_id, c["segment_id"])
                if seg is None:
                    problems.append("segmentId: segment not found in this tenant")
                else:
                    size = await segment_size(conn, seg)
            if not c["channels"]:
                problems.append("channels: at least one channel is required")
            for channel, field in (
                (Channel.EMAIL, "email_template_id"),
                (Channel.SMS, "sms_template_id"),
            ):
                if channel not in c["channels"]:
                    continue
                api_field = "emailTemplateId" if channel == Channel.EMAIL else "smsTemplateId"
                template_id = c[field]
                if not template_id:
                    problems.append(f"{api_field}: channel {channel} needs a template")
                    continue
                found = (
                    await conn.execute(
                        select(Template.channel).where(
                            Template.id == template_id, Template.tenant_id == inp.tenant_id
                        )
                    )
                ).scalar_one_or_none()
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
        st = inp.state
        async with self._deps.engine.begin() as conn:
            await conn.execute(
                update(Campaign)
                .where(Campaign.id == inp.campaign_id, Campaign.state_version < inp.version)
                .values(
                    status=st.status.value,
                    scheduled_at=st.scheduled_at,
                    started_at=st.started_at,
                    paused_at=st.paused_at,
                    resumed_at=st.resumed_at,
                    cancelled_at=st.cancelled_at,
                    completed_at=st.completed_at,
                    target_count=st.target_count,
                    # `failed_count` is not written: the API's failed count comes from the roll-ups
                    # (db.campaign_counts), and nothing reads the column.
                    skipped_count=st.counts.skipped,
                    unknown_count=st.counts.unknown,
                    next_run_at=st.next_run_at,
                    last_run_at=st.last_run_at,
                    run_count=st.run_count,
                    last_error=st.last_error,
                    state_version=inp.version,
                    updated_at=datetime.now(UTC),
                )
            )

    @activity.defn(name="apply_edit")
    async def apply_edit(self, inp: ApplyEditInput) -> None:
        columns = {
            "segment_id": "segment_id",
            "email_template_id": "email_template_id",
            "sms_template_id": "sms_template_id",
            "channels": "channels",
            "schedule": "schedule",
            "trigger_event": "trigger_event",
            "trigger_conditions": "trigger_conditions",
        }
        values = {
            col: getattr(inp.edit, name) for name, col in columns.items() if name in inp.edit.fields_set
        }
        if not values:
            return
        if "channels" in values and values["channels"] is None:
            raise ApplicationError("channels cannot be null", type=ERR_CAMPAIGN_INVALID, non_retryable=True)
        values["updated_at"] = datetime.now(UTC)
        async with self._deps.engine.begin() as conn:
            await conn.execute(
                update(Campaign)
                .where(Campaign.id == inp.campaign_id, Campaign.tenant_id == inp.tenant_id)
                .values(**values)
            )

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
