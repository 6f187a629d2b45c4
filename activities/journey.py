"""Activities of journey sends (CampaignSendWorkflow) and of the reference JourneyWorkflow.

A journey child send is one JOURNEY run (`<campaign>.j<digest of send_key>`): its audience is
snapshotted once into `run_recipients`, then the ordinary `send_batch` pages send it under the
ledger's rules, so a retried or restarted child never sends a message twice.
"""

from sqlalchemy import text
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from activities.lifecycle import LifecycleActivities
from core.constants import ERR_CAMPAIGN_INVALID
from core.enums import CampaignType, Outcome
from core.messages import (
    CheckCampaignInput,
    Counts,
    Engagement,
    EngagementInput,
    EventSeenInput,
    PrepareSendInput,
    PrepareSendResult,
    RunSummary,
    RunSummaryInput,
)
from db.audience import key_column, load_segment, member_ids_query
from db.template_versions import PIN_VERSIONS

MAX_LISTED_CUSTOMERS = 10_000
SENT_IDS_SHOWN = 1_000

# The run pins the current versions of the campaign's templates, as a segment run does.
_RUN = text(
    f"""
    INSERT INTO send_runs (id, campaign_id, tenant_id, number, kind, source_id,
                           email_template_version, sms_template_version)
    SELECT :id, c.id, c.tenant_id, 0, 'JOURNEY', :key, {PIN_VERSIONS}
    FROM campaigns c WHERE c.id = :c AND c.tenant_id = :t
    ON CONFLICT (id) DO NOTHING
    """
)
_RECIPIENTS = text(
    "INSERT INTO run_recipients (run_id, customer_id)"
    " SELECT :r, unnest(CAST(:ids AS text[])) ON CONFLICT DO NOTHING"
)
_COMPLETE = text(
    "UPDATE send_runs SET snapshot_complete = true,"
    " target_count = (SELECT count(*) FROM run_recipients WHERE run_id = :r)"
    " WHERE id = :r RETURNING target_count"
)


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
            row = (
                await conn.execute(
                    text("SELECT type, segment_id FROM campaigns WHERE id = :c AND tenant_id = :t"),
                    {"c": inp.campaign_id, "t": inp.tenant_id},
                )
            ).first()
            if row is None:
                raise _invalid("campaign not found in this tenant")
            if row[0] != CampaignType.JOURNEY.value:
                raise _invalid(f"a journey can send only JOURNEY campaigns, not {row[0]}")
            done = (
                await conn.execute(
                    text("SELECT target_count FROM send_runs WHERE id = :r AND snapshot_complete"),
                    {"r": inp.run_id},
                )
            ).scalar_one_or_none()
        if done is not None:
            return PrepareSendResult(target_count=int(done))
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
            await conn.execute(
                _RUN, {"id": inp.run_id, "c": inp.campaign_id, "t": inp.tenant_id, "key": inp.send_key[:200]}
            )
            if audience.customer_ids is not None:
                await conn.execute(_RECIPIENTS, {"r": inp.run_id, "ids": sorted(set(audience.customer_ids))})
            else:
                segment_id = row[1]
                segment = await load_segment(conn, inp.tenant_id, segment_id) if segment_id else None
                if segment is None:
                    raise _invalid("the campaign has no segment in this tenant")
                after: str | None = None
                chunk = self._deps.settings.snapshot_chunk_size
                while True:
                    query = member_ids_query(segment)
                    if after is not None:
                        query = query.where(key_column(segment) > after)
                    ids = list((await conn.execute(query.limit(chunk))).scalars())
                    if ids:
                        await conn.execute(_RECIPIENTS, {"r": inp.run_id, "ids": ids})
                        after = ids[-1]
                    activity.heartbeat(after)
                    if len(ids) < chunk:
                        break
            target = (await conn.execute(_COMPLETE, {"r": inp.run_id})).scalar_one()
        return PrepareSendResult(target_count=int(target))

    @activity.defn(name="run_summary")
    async def run_summary(self, inp: RunSummaryInput) -> RunSummary:
        async with self._deps.engine.connect() as conn:
            by_outcome = {
                r[0]: int(r[1])
                for r in await conn.execute(
                    text("SELECT outcome, count(*) FROM deliveries WHERE run_id = :r GROUP BY outcome"),
                    {"r": inp.run_id},
                )
            }
            sent = list(
                (
                    await conn.execute(
                        text(
                            "SELECT DISTINCT customer_id FROM deliveries"
                            " WHERE run_id = :r AND outcome = 'SENT' ORDER BY customer_id LIMIT :n"
                        ),
                        {"r": inp.run_id, "n": SENT_IDS_SHOWN},
                    )
                ).scalars()
            )
        return RunSummary(
            counts=Counts(
                sent=by_outcome.get(Outcome.SENT, 0),
                skipped=by_outcome.get(Outcome.SKIPPED, 0),
                failed=by_outcome.get(Outcome.FAILED, 0),
                bounced=by_outcome.get(Outcome.BOUNCED, 0),
                unknown=by_outcome.get(Outcome.UNKNOWN, 0) + by_outcome.get(Outcome.PENDING, 0),
            ),
            sent_customer_ids=sent,
        )

    @activity.defn(name="customer_engagement")
    async def customer_engagement(self, inp: EngagementInput) -> Engagement:
        """Did the customer open or click this campaign's message (of this run, if named)?"""
        async with self._deps.engine.connect() as conn:
            types = set(
                (
                    await conn.execute(
                        text(
                            "SELECT DISTINCT i.type FROM interactions i"
                            " LEFT JOIN deliveries d ON d.id = i.delivery_id"
                            " WHERE i.campaign_id = :c AND i.customer_id = :cu"
                            "   AND i.type IN ('OPENED', 'CLICKED')"
                            "   AND (CAST(:r AS text) IS NULL OR d.run_id = :r)"
                        ),
                        {"c": inp.campaign_id, "cu": inp.customer_id, "r": inp.run_id},
                    )
                ).scalars()
            )
        return Engagement(opened="OPENED" in types or "CLICKED" in types, clicked="CLICKED" in types)

    @activity.defn(name="customer_event_seen")
    async def customer_event_seen(self, inp: EventSeenInput) -> bool:
        async with self._deps.engine.connect() as conn:
            found = (
                await conn.execute(
                    text(
                        "SELECT 1 FROM customer_events WHERE tenant_id = :t AND customer_id = :c"
                        " AND type = :type AND received_at >= :since LIMIT 1"
                    ),
                    {"t": inp.tenant_id, "c": inp.customer_id, "type": inp.event_type, "since": inp.since},
                )
            ).first()
        return found is not None
