"""The audience snapshot of a run, taken in keyset-paginated chunks (never the whole audience).

Each call copies one chunk of segment members after `after` into `run_recipients`; re-running a
chunk is harmless (ON CONFLICT DO NOTHING), so retries and crashes neither lose nor double anyone.

Consent and suppression (README "Consent and suppression") are applied here a first time: a
member who may not be
sent to on a channel of the campaign gets that channel's SKIPPED ledger row, with its reason,
right away (`activities.sending.skip_reason`, the same rule the send applies again just before
each message). The member stays in the snapshot, so targets = sent + skipped + failed + bounced +
unknown still holds, and the send page finds the row already decided.

The first chunk also writes the run, pinning the current versions of the campaign's templates
(db.template_versions): edits made while the run sends do not change what it sends.
"""

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from activities.sending import _address, skip_reason
from core.constants import ERR_CAMPAIGN_INVALID
from core.enums import Channel, Outcome
from core.ids import new_id
from core.messages import SnapshotInput, SnapshotResult
from db.audience import CONSENT_COLUMNS, key_column, load_segment, member_ids_query
from db.models import Campaign, RunRecipient
from db.template_versions import PIN_VERSIONS

_NEW_RUN = text(
    f"""
    INSERT INTO send_runs (id, campaign_id, tenant_id, number, email_template_version,
                           sms_template_version)
    SELECT :id, c.id, c.tenant_id, :n, {PIN_VERSIONS}
    FROM campaigns c WHERE c.id = :c AND c.tenant_id = :t
    ON CONFLICT (id) DO NOTHING
    """
)
_CONSENT = text(
    f"SELECT c.id AS id, {CONSENT_COLUMNS} FROM customers c WHERE c.id = ANY(:ids) AND c.tenant_id = :t"
)
_SKIP_MANY = text(
    """
    INSERT INTO deliveries (id, run_id, campaign_id, tenant_id, customer_id, channel, outcome,
                            reason, address)
    SELECT v.id, :run, :campaign, :tenant, v.customer, v.channel, :outcome, v.reason, v.address
    FROM unnest(CAST(:ids AS text[]), CAST(:customers AS text[]), CAST(:channels AS text[]),
                CAST(:reasons AS text[]), CAST(:addresses AS text[]))
         AS v(id, customer, channel, reason, address)
    ON CONFLICT (run_id, customer_id, channel) DO NOTHING
    """
)


class SnapshotActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="snapshot_audience")
    async def snapshot_audience(self, inp: SnapshotInput) -> SnapshotResult:
        chunk = self._deps.settings.snapshot_chunk_size
        async with self._deps.engine.begin() as conn:
            await conn.execute(
                _NEW_RUN, {"id": inp.run_id, "c": inp.campaign_id, "t": inp.tenant_id, "n": inp.run_number}
            )
            campaign = (
                await conn.execute(
                    select(Campaign.segment_id, Campaign.channels).where(
                        Campaign.id == inp.campaign_id, Campaign.tenant_id == inp.tenant_id
                    )
                )
            ).first()
            segment_id = campaign.segment_id if campaign else None
            segment = await load_segment(conn, inp.tenant_id, segment_id) if segment_id else None
            if campaign is None or segment is None:
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
                await _skip_ineligible(conn, inp, ids, [Channel(c) for c in campaign.channels])
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


async def _skip_ineligible(
    conn: AsyncConnection, inp: SnapshotInput, ids: list[str], channels: list[Channel]
) -> None:
    """Record a SKIPPED row, with its reason, for each member and channel that may not be sent to."""
    skips: list[tuple[str, Channel, str, str | None]] = []
    for row in (await conn.execute(_CONSENT, {"ids": ids, "t": inp.tenant_id})).mappings():
        for channel in channels:
            reason = skip_reason(row, channel)
            if reason is not None:
                skips.append((row["id"], channel, reason.value, _address(row, channel)))
    if skips:
        await conn.execute(
            _SKIP_MANY,
            {
                "ids": [new_id("delivery") for _ in skips],
                "run": inp.run_id,
                "campaign": inp.campaign_id,
                "tenant": inp.tenant_id,
                "outcome": Outcome.SKIPPED.value,
                "customers": [s[0] for s in skips],
                "channels": [s[1].value for s in skips],
                "reasons": [s[2] for s in skips],
                "addresses": [s[3] for s in skips],
            },
        )
