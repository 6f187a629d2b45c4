"""Creating a campaign: its row, then its workflow, so that no failure leaves one without the other
for long (docs/data-access.md "Creating a campaign").

1. The row is written first, in DRAFT, with `state_version` 0: no workflow has written it yet.
2. The workflow is started with a fixed id and `USE_EXISTING`: starting it again joins the one
   already running. A start that fails is asked about (`describe`): started after all (only the
   answer was lost) carries on; never started removes the row and answers 503; Temporal unable
   to say leaves the row to step 3.
3. What is left unconfirmed is finished or removed: a retry with the same Idempotency-Key runs
   step 2 again and answers with the same campaign; the reconcile pass of the API removes the
   rows of creates nobody finished whose workflow does not exist (`reconcile_unconfirmed`).

A crash anywhere in between therefore ends, after a retry or a reconcile pass, with one row and
one workflow, or with neither.
"""

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import Principal
from api.campaign_writes import body_hash, check_create, checked_schedule_at, new_campaign
from api.errors import Problem
from api.lifecycle import CampaignControl
from api.schemas.campaigns import CampaignCreate
from core.enums import CampaignStatus
from core.ids import new_id
from core.messages import ScheduleRequest, TransitionResult
from db.campaigns import (
    CampaignRow,
    campaign_by_idempotency_key,
    delete_campaign,
    delete_unconfirmed,
    insert_campaign,
    lock_idempotency_key,
    owned_campaign,
    unconfirmed_campaigns,
)

log = logging.getLogger("campaigns.api.create")

# How old an unconfirmed row must be before the reconcile pass asks about it: longer than any
# create takes, so a create still under way is never undone under its feet.
RECONCILE_GRACE = timedelta(minutes=5)
RECONCILE_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class Created:
    """The campaign a create wrote or found; `replayed`: an earlier request with the key wrote it."""

    row: CampaignRow
    replayed: bool


async def create_campaign(
    engine: AsyncEngine, control: CampaignControl, principal: Principal, body: CampaignCreate, key: str | None
) -> Created:
    """Write the campaign (or find the one this Idempotency-Key wrote) and finish its start."""
    scheduled_at = checked_schedule_at(body)
    created = await _write_row(engine, principal, body, key)
    row = created.row
    if row.state_version == 0:  # its workflow has never written it: maybe never started
        await _start_or_undo(engine, control, row)
    if scheduled_at is not None and row.status == CampaignStatus.DRAFT:
        await _schedule_or_undo(engine, control, row.id, scheduled_at)
    return created


async def _write_row(
    engine: AsyncEngine, principal: Principal, body: CampaignCreate, key: str | None
) -> Created:
    digest = body_hash(body)
    async with engine.begin() as conn:
        if key:
            await lock_idempotency_key(conn, body.tenant_id, key)
            existing = await campaign_by_idempotency_key(conn, body.tenant_id, key)
            if existing is not None:
                if existing.idempotency_hash != digest:
                    raise Problem(409, "Idempotency-Key was already used with a different body")
                return Created(existing, replayed=True)
        await check_create(conn, body)
        new = new_campaign(new_id("campaign"), body, principal, key, digest)
        try:
            await insert_campaign(conn, new)
        except IntegrityError:
            raise Problem(409, "a concurrent request with the same Idempotency-Key won") from None
        campaign = await owned_campaign(conn, [body.tenant_id], new.id)
    assert campaign is not None  # written just now, in this transaction
    return Created(campaign, replayed=False)


async def _start_or_undo(engine: AsyncEngine, control: CampaignControl, row: CampaignRow) -> None:
    """Start the workflow; when that fails, find out whether it started anyway."""
    try:
        await control.start(
            row.id, row.tenant_id, row.club_id, row.type, name=row.name, created_by=row.created_by
        )
        return
    except Exception as err:
        started = await control.workflow_exists(row.id)
        if started:
            log.warning("start of campaign %s answered %r, but its workflow runs", row.id, err)
            return
        if started is False:  # certainly never started: the create did not happen
            async with engine.begin() as conn:
                await delete_unconfirmed(conn, row.id)
        raise Problem(503, "the workflow service is unavailable, try again") from err


async def _schedule_or_undo(
    engine: AsyncEngine, control: CampaignControl, campaign_id: str, scheduled_at: datetime
) -> None:
    """`scheduledAt` on create is create + schedule in one call; if the schedule is refused, the
    create is undone, so a refused request changes nothing."""
    draft = CampaignStatus.DRAFT.value
    try:
        await control.update(
            campaign_id,
            "schedule",
            TransitionResult,
            ScheduleRequest(scheduled_at=scheduled_at),
            status=draft,
        )
    except Problem:
        await control.update(campaign_id, "discard", TransitionResult, status=draft)
        async with engine.begin() as conn:
            await delete_campaign(conn, campaign_id)
        raise


# ---- the reconcile pass ---------------------------------------------------------------------------


async def reconcile_unconfirmed(
    engine: AsyncEngine,
    control: CampaignControl,
    grace: timedelta = RECONCILE_GRACE,
    tenant_id: str | None = None,
) -> int:
    """Remove the rows of creates that never started their workflow (and are older than `grace`;
    of one tenant if given); rows whose workflow exists are left to it (its first sync confirms
    them), and so are those Temporal cannot answer for now. Rows removed."""
    async with engine.connect() as conn:
        rows = await unconfirmed_campaigns(conn, datetime.now(UTC) - grace, tenant_id)
    removed = 0
    for row in rows:
        if await control.workflow_exists(row.id) is False:
            async with engine.begin() as conn:
                removed += await delete_unconfirmed(conn, row.id)
            log.info("removed campaign %s: its create never started a workflow", row.id)
    return removed


class BackgroundReconcile:
    """The API's reconcile pass, every `interval` seconds; `start()` inside the event loop."""

    def __init__(
        self, engine: AsyncEngine, control: CampaignControl, interval: float = RECONCILE_INTERVAL_SECONDS
    ) -> None:
        self._engine = engine
        self._control = control
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="reconcile-creates")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            try:
                await reconcile_unconfirmed(self._engine, self._control)
            except Exception:  # the database or Temporal is away: the next pass tries again
                log.exception("reconcile pass failed")
            await asyncio.sleep(self._interval)
