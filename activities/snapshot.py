"""The audience snapshot of a run, taken in keyset-paginated chunks (never the whole audience).

Each call copies one chunk of segment members after `after` into `run_recipients`; re-running a
chunk is harmless (ON CONFLICT DO NOTHING), so retries and crashes neither lose nor double anyone.
"""

from sqlalchemy import func, select, text
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from core.constants import ERR_CAMPAIGN_INVALID
from core.messages import SnapshotInput, SnapshotResult
from db.audience import key_column, load_segment, member_ids_query
from db.models import Campaign, RunRecipient


class SnapshotActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="snapshot_audience")
    async def snapshot_audience(self, inp: SnapshotInput) -> SnapshotResult:
        chunk = self._deps.settings.snapshot_chunk_size
        async with self._deps.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO send_runs (id, campaign_id, tenant_id, number)"
                    " VALUES (:id, :c, :t, :n) ON CONFLICT (id) DO NOTHING"
                ),
                {"id": inp.run_id, "c": inp.campaign_id, "t": inp.tenant_id, "n": inp.run_number},
            )
            segment_id = (
                await conn.execute(
                    select(Campaign.segment_id).where(
                        Campaign.id == inp.campaign_id, Campaign.tenant_id == inp.tenant_id
                    )
                )
            ).scalar_one_or_none()
            segment = await load_segment(conn, inp.tenant_id, segment_id) if segment_id else None
            if segment is None:
                raise ApplicationError(
                    "the campaign's segment no longer exists",
                    type=ERR_CAMPAIGN_INVALID,
                    non_retryable=True,
                )
            query = member_ids_query(segment)
            if inp.after is not None:
                query = query.where(key_column(segment) > inp.after)
            ids = list((await conn.execute(query.limit(chunk))).scalars())
            if ids:
                await conn.execute(
                    text(
                        "INSERT INTO run_recipients (run_id, customer_id)"
                        " SELECT :r, unnest(CAST(:ids AS text[])) ON CONFLICT DO NOTHING"
                    ),
                    {"r": inp.run_id, "ids": ids},
                )
            done = len(ids) < chunk
            target = 0
            if done:
                target = int(
                    (
                        await conn.execute(select(func.count()).where(RunRecipient.run_id == inp.run_id))
                    ).scalar_one()
                )
                await conn.execute(
                    text("UPDATE send_runs SET snapshot_complete = true, target_count = :n WHERE id = :r"),
                    {"n": target, "r": inp.run_id},
                )
        activity.heartbeat(len(ids))
        return SnapshotResult(
            last_customer_id=ids[-1] if ids else inp.after,
            inserted=len(ids),
            done=done,
            target_count=target,
        )
