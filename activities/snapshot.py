"""The audience snapshot of a run, taken in keyset-paginated chunks (never the whole audience).

Each call copies one chunk of segment members after `after` into `run_recipients`; re-running a
chunk is harmless (ON CONFLICT DO NOTHING), so retries and crashes neither lose nor double anyone.

Consent and suppression (README "Consent and suppression") are applied here a first time: a
member who may not be
sent to on a channel of the campaign gets that channel's SKIPPED ledger row, with its reason,
right away (`activities.send.gates.skip_reason`, the same rule the send applies again just before
each message). The member stays in the snapshot, so targets = sent + skipped + failed + bounced +
unknown still holds, and the send page finds the row already decided.

The first chunk also writes the run, pinning the current versions of the campaign's templates
(db.ledger.runs): edits made while the run sends do not change what it sends.
"""

from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from activities.send.gates import skip_reason
from activities.send.model import address_of
from core.constants import ERR_CAMPAIGN_INVALID
from core.enums import Channel, Outcome
from core.ids import new_id
from core.messages import SnapshotInput, SnapshotResult
from db.audience import consent_of, member_ids_after
from db.campaign_state import campaign_setup
from db.ledger import runs
from db.ledger.sends import FinalRow, insert_finals
from db.segments import load_segment


class SnapshotActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="snapshot_audience")
    async def snapshot_audience(self, inp: SnapshotInput) -> SnapshotResult:
        chunk = self._deps.settings.snapshot_chunk_size
        async with self._deps.engine.begin() as conn:
            await runs.create_run(conn, inp.run_id, inp.campaign_id, inp.tenant_id, number=inp.run_number)
            campaign = await campaign_setup(conn, inp.campaign_id, inp.tenant_id)
            segment_id = campaign.segment_id if campaign else None
            segment = await load_segment(conn, inp.tenant_id, segment_id) if segment_id else None
            if campaign is None or segment is None:
                raise ApplicationError(
                    "the campaign's segment no longer exists",
                    type=ERR_CAMPAIGN_INVALID,
                    non_retryable=True,
                )
            ids = await member_ids_after(conn, segment, inp.after, chunk)
            if ids:
                await runs.add_recipients(conn, inp.run_id, ids)
                await _skip_ineligible(conn, inp, ids, [Channel(c) for c in campaign.channels])
            done = len(ids) < chunk
            target = 0
            if done:
                target = await runs.complete_snapshot(conn, inp.run_id)
        activity.heartbeat(len(ids))
        return SnapshotResult(
            last_customer_id=ids[-1] if ids else inp.after,
            inserted=len(ids),
            done=done,
            target_count=target,
        )


async def _skip_ineligible(
    conn: AsyncConnection, inp: SnapshotInput, ids: list[str], channels: list[Channel]
) -> None:
    """Record a SKIPPED row, with its reason, for each member and channel that may not be sent to."""
    skips: list[FinalRow] = []
    for row in await consent_of(conn, inp.tenant_id, ids):
        for channel in channels:
            reason = skip_reason(row, channel)
            if reason is not None:
                skips.append(
                    FinalRow(
                        id=new_id("delivery"),
                        run_id=inp.run_id,
                        customer_id=row["id"],
                        channel=channel.value,
                        outcome=Outcome.SKIPPED.value,
                        reason=reason.value,
                        detail=None,
                        address=address_of(row, channel),
                    )
                )
    await insert_finals(conn, campaign_id=inp.campaign_id, tenant_id=inp.tenant_id, rows=skips)
