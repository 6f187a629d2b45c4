"""send_triggered: drain a TRIGGERED campaign's queue of matched events (README "Campaign types").

`POST /events` routes each new event, in the same transaction that stores it, to every ACTIVE
(or PAUSED) TRIGGERED campaign it matches: one `trigger_matches` row per (campaign, event id). No
workflow start or signal per event, so ingestion runs at database speed, not at Temporal's.

The campaign workflow runs this activity in a loop. Each call long-polls the queue (every
`trigger_poll_interval`, backing off to `trigger_poll_max_interval` while the queue is empty, at
most `trigger_poll_seconds`), then sends a page of up to `batch_size`
matches. Every match is its own EVENT run (`<campaign>.e<seq>`) with one recipient, so the ledger's
(run, recipient, channel) key makes "at most once per event id" hold through retries and crashes,
by the same claim-before-send rules as a segment send. The halt epoch lives on the campaign's
control run (`<campaign>.t`), so pause and cancel reach a page mid-send exactly as for ONE_TIME.
"""

import asyncio
import time
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from temporalio import activity

from activities.deps import ActivityDeps
from activities.sending import RECIPIENT_COLUMNS, _Page
from core.constants import trigger_control_run_id
from core.messages import CloseTriggersInput, Counts, SendBatchInput, SendBatchResult

_CONTROL_RUN = text(
    "INSERT INTO send_runs (id, campaign_id, tenant_id, number, kind, snapshot_complete)"
    " VALUES (:id, :c, :t, 0, 'TRIGGER', true) ON CONFLICT (id) DO NOTHING"
)
_ANY_PENDING = text("SELECT 1 FROM trigger_matches WHERE campaign_id = :c AND state = 'PENDING' LIMIT 1")
# One statement: take the oldest pending matches, give each its EVENT run and recipient row,
# and return them with what a send needs of the customer.
_TAKE = text(
    f"""
    WITH m AS (
        SELECT seq, event_id, customer_id, :c || '.e' || seq AS run_id
        FROM trigger_matches
        WHERE campaign_id = :c AND state = 'PENDING'
        ORDER BY seq
        LIMIT :limit
    ), runs AS (
        INSERT INTO send_runs (id, campaign_id, tenant_id, number, kind, source_id,
                               snapshot_complete, target_count)
        SELECT run_id, :c, :t, 0, 'EVENT', event_id, true, 1 FROM m
        ON CONFLICT (id) DO NOTHING
    ), recipients AS (
        INSERT INTO run_recipients (run_id, customer_id)
        SELECT run_id, customer_id FROM m
        ON CONFLICT DO NOTHING
    )
    SELECT m.seq, m.run_id, m.customer_id AS id, {RECIPIENT_COLUMNS}
    FROM m LEFT JOIN customers c ON c.id = m.customer_id AND c.tenant_id = :t
    ORDER BY m.seq
    """
)
_DONE = text(
    """
    WITH done AS (
        UPDATE trigger_matches SET state = 'DONE' WHERE seq = ANY(:seqs) AND state = 'PENDING'
        RETURNING seq
    )
    UPDATE send_runs SET completed_at = coalesce(completed_at, now())
    WHERE id = ANY(:runs)
    """
)
_CLOSE = text(
    "UPDATE trigger_matches SET state = 'CLOSED' WHERE campaign_id = :c AND state = 'PENDING'"
)


class _TriggeredPage(_Page):
    """A page whose rows are queued events, each in its own EVENT run."""

    rows: Sequence[RowMapping] = ()

    async def load_rows(self) -> Sequence[RowMapping]:
        async with self.deps.engine.begin() as conn:
            self.rows = (
                (
                    await conn.execute(
                        _TAKE,
                        {
                            "c": self.inp.campaign_id,
                            "t": self.inp.tenant_id,
                            "limit": self.deps.settings.batch_size,
                        },
                    )
                )
                .mappings()
                .all()
            )
        return self.rows


class TriggeredActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="send_triggered")
    async def send_triggered(self, inp: SendBatchInput) -> SendBatchResult:
        deps = self._deps
        async with deps.engine.begin() as conn:
            await conn.execute(
                _CONTROL_RUN,
                {"id": trigger_control_run_id(inp.campaign_id), "c": inp.campaign_id, "t": inp.tenant_id},
            )
        page = _TriggeredPage(deps, inp)
        if not await self._wait_for_events(page):
            return SendBatchResult(
                page_complete=True, exhausted=False, next_cursor=None, recipients=0, counts=Counts(),
                sent_recipients=0,
            )
        result = await page.run()
        if result.page_complete and page.rows:
            async with deps.engine.begin() as conn:
                await conn.execute(
                    _DONE,
                    {"seqs": [r["seq"] for r in page.rows], "runs": [r["run_id"] for r in page.rows]},
                )
        return result

    async def _wait_for_events(self, page: _TriggeredPage) -> bool:
        """Long-poll the queue; False when nothing came or the campaign was halted meanwhile."""
        settings = self._deps.settings
        deadline = time.monotonic() + settings.trigger_poll_seconds
        # Look often while events flow, less and less while the queue stays empty (an idle
        # campaign costs a query every `trigger_poll_max_interval`, not five a second).
        interval = settings.trigger_poll_interval
        while True:
            async with self._deps.engine.connect() as conn:
                found = (await conn.execute(_ANY_PENDING, {"c": page.inp.campaign_id})).first()
            if found is not None:
                return True
            if await page._halt_requested() or time.monotonic() >= deadline:
                return False
            activity.heartbeat()
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, settings.trigger_poll_max_interval)

    @activity.defn(name="close_triggers")
    async def close_triggers(self, inp: CloseTriggersInput) -> None:
        """A finished campaign sends nothing more: its queued events are closed, not left pending."""
        async with self._deps.engine.begin() as conn:
            await conn.execute(_CLOSE, {"c": inp.campaign_id})
