"""Send runs and their audience snapshots (`send_runs`, `run_recipients`).

A run is one snapshot of a campaign's audience: SEGMENT runs are numbered 1, 2, ... per campaign;
EVENT (one triggering event), JOURNEY (one journey child send) and TRIGGER (the halt-epoch carrier
of a TRIGGERED campaign) runs are number 0. Run ids come from core.constants. A run pins the
template versions it sends when it is first written (README "Templates"), so edits made while it
sends do not change what it sends.
"""

from collections.abc import Sequence
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import Channel

RunKind = Literal["SEGMENT", "EVENT", "JOURNEY", "TRIGGER"]

# The current versions of the campaign's templates (`c` = campaigns), pinned once, when the run is
# first written.
PIN_VERSIONS = """
    (SELECT t.version FROM templates t WHERE t.id = c.email_template_id AND t.tenant_id = c.tenant_id),
    (SELECT t.version FROM templates t WHERE t.id = c.sms_template_id AND t.tenant_id = c.tenant_id)
"""
_CREATE = text(
    f"""
    INSERT INTO send_runs (id, campaign_id, tenant_id, number, kind, source_id,
                           email_template_version, sms_template_version)
    SELECT :id, c.id, c.tenant_id, :n, CAST(:kind AS text), CAST(:source AS text), {PIN_VERSIONS}
    FROM campaigns c WHERE c.id = :c AND c.tenant_id = :t
    ON CONFLICT (id) DO NOTHING
    """
)
_ADD_RECIPIENTS = text(
    "INSERT INTO run_recipients (run_id, customer_id)"
    " SELECT :r, unnest(CAST(:ids AS text[])) ON CONFLICT DO NOTHING"
)
_COMPLETE = text(
    "UPDATE send_runs SET snapshot_complete = true,"
    " target_count = (SELECT count(*) FROM run_recipients WHERE run_id = :r)"
    " WHERE id = :r RETURNING target_count"
)
_COMPLETED_TARGET = text("SELECT target_count FROM send_runs WHERE id = :r AND snapshot_complete")
_IDS_AFTER = text(
    "SELECT customer_id FROM run_recipients"
    " WHERE run_id = :run AND (CAST(:after AS text) IS NULL OR customer_id > :after)"
    " AND (CAST(:upto AS text) IS NULL OR customer_id <= :upto)"
    " ORDER BY customer_id LIMIT :limit"
)
_RAISE_HALT = text("UPDATE send_runs SET halt_epoch = GREATEST(halt_epoch, :e) WHERE id = :r")
_HALT_EPOCH = text("SELECT halt_epoch FROM send_runs WHERE id = :r")
_FINISH = text("UPDATE send_runs SET completed_at = coalesce(completed_at, now()) WHERE id = :r")
# The pins of a run; '' (a resend, which spans the campaign) reads the campaign's latest run.
_PINS = text(
    """
    SELECT email_template_version, sms_template_version FROM send_runs
    WHERE campaign_id = :campaign AND (id = :run OR CAST(:run AS text) = '')
    ORDER BY started_at DESC LIMIT 1
    """
)


async def create_run(
    conn: AsyncConnection,
    run_id: str,
    campaign_id: str,
    tenant_id: str,
    *,
    number: int = 0,
    kind: RunKind = "SEGMENT",
    source_id: str | None = None,
) -> None:
    """Write the run once, pinning the campaign's current template versions; writing it again
    (a retried activity) changes nothing. Nothing is written if the campaign is not the tenant's."""
    await conn.execute(
        _CREATE,
        {
            "id": run_id,
            "c": campaign_id,
            "t": tenant_id,
            "n": number,
            "kind": kind,
            "source": source_id,
        },
    )


async def add_recipients(conn: AsyncConnection, run_id: str, customer_ids: Sequence[str]) -> None:
    """Add customers to the run's snapshot; one already in it is not added twice."""
    await conn.execute(_ADD_RECIPIENTS, {"r": run_id, "ids": list(customer_ids)})


async def complete_snapshot(conn: AsyncConnection, run_id: str) -> int:
    """Mark the snapshot complete; returns its size, which becomes the run's target count."""
    return int((await conn.execute(_COMPLETE, {"r": run_id})).scalar_one())


async def completed_target(conn: AsyncConnection, run_id: str) -> int | None:
    """The target count of a run whose snapshot is complete; None while it is not (or no run)."""
    target = (await conn.execute(_COMPLETED_TARGET, {"r": run_id})).scalar_one_or_none()
    return None if target is None else int(target)


async def recipient_ids_after(
    conn: AsyncConnection, run_id: str, after: str | None, limit: int, upto: str | None = None
) -> list[str]:
    """Up to `limit` customer ids of the snapshot after `after` (None: from the start) and up to
    `upto` (None: to the end), in order: the keyset pages are cut on."""
    rows = await conn.execute(_IDS_AFTER, {"run": run_id, "after": after, "limit": limit, "upto": upto})
    return [str(customer_id) for customer_id in rows.scalars()]


async def raise_halt(conn: AsyncConnection, run_id: str, epoch: int) -> None:
    """Ask the pages started with an epoch up to `epoch` to start no new message (pause, cancel).
    The epoch only grows, so a late, older request never lifts a newer halt."""
    await conn.execute(_RAISE_HALT, {"e": epoch, "r": run_id})


async def halt_epoch(conn: AsyncConnection, run_id: str) -> int | None:
    """The run's halt epoch (a page started with epoch e stops once this is >= e); None: no run."""
    epoch = (await conn.execute(_HALT_EPOCH, {"r": run_id})).scalar_one_or_none()
    return None if epoch is None else int(epoch)


async def finish_run(conn: AsyncConnection, run_id: str) -> None:
    """Record when the run finished; the first time stays."""
    await conn.execute(_FINISH, {"r": run_id})


async def run_pins(conn: AsyncConnection, campaign_id: str, run_id: str) -> dict[Channel, int | None]:
    """The template versions a run pinned, per channel (None: send the current content). `run_id`
    '' reads the campaign's latest run (a resend spans the campaign)."""
    row = (await conn.execute(_PINS, {"campaign": campaign_id, "run": run_id})).first()
    return {Channel.EMAIL: row[0] if row else None, Channel.SMS: row[1] if row else None}
