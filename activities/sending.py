"""send_batch: one page of a run's recipients through the send pipeline (activities.send).

Exactly-once as far as the outside world allows (README "Delivery guarantees (the ledger)"):
- a message is claimed (a PENDING row) only as a provider slot takes it and answered as soon as
  the provider answers, so a crash leaves at most 2 x slots of each channel PENDING;
- a retried page turns PENDING rows (a dead attempt's in-flight messages) into UNKNOWN and never
  resends them, except SMS when the provider deduplicates on the key (`CAMPAIGNS_SMS_IDEMPOTENT`):
  those are posted again under the same id; every row that has an outcome is skipped;
- pause/cancel raise `halt_epoch`; the page stops starting messages within ~100 ms, lets the
  in-flight ones finish and returns with `page_complete=False`, so resume re-reads the page.
"""

from collections.abc import Sequence

from sqlalchemy.engine import RowMapping
from temporalio import activity

from activities.deps import ActivityDeps
from activities.send.gates import default_gates, screen
from activities.send.model import Content, Message
from activities.send.page import HaltWatch, SendPage, load_content
from core.enums import InteractionType, Outcome
from core.ids import new_id
from core.messages import Counts, SendBatchInput, SendBatchResult
from db import rollups
from db.ledger.sends import PageBounds, insert_finals, page_outcomes, run_page, settle_orphans


class SendingActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="send_batch")
    async def send_batch(self, inp: SendBatchInput) -> SendBatchResult:
        limit = inp.limit or self._deps.settings.batch_size
        async with self._deps.engine.connect() as conn:
            rows = await run_page(
                conn, tenant_id=inp.tenant_id, run_id=inp.run_id, after=inp.after, upto=inp.upto, limit=limit
            )
        return await send_rows(self._deps, inp, rows, limit)


async def send_rows(
    deps: ActivityDeps, inp: SendBatchInput, rows: Sequence[RowMapping], limit: int
) -> SendBatchResult:
    """Send a page of recipients (`run_id`, `id` and db.audience.RECIPIENT_COLUMNS each, by
    customer id) on the campaign's channels, and say how the page ended."""
    content = await load_content(
        deps, campaign_id=inp.campaign_id, tenant_id=inp.tenant_id, run_id=inp.run_id
    )
    if not rows:
        return SendBatchResult(
            page_complete=True,
            exhausted=True,
            next_cursor=inp.after,
            recipients=0,
            counts=Counts(),
            sent_recipients=await sent_recipients(deps, inp.campaign_id),
        )
    customers = [r["id"] for r in rows]
    bounds = PageBounds(sorted({r["run_id"] for r in rows}), min(customers), max(customers))
    messages = await _unsent(deps, inp, rows, content, bounds)
    page = SendPage(
        deps,
        campaign_id=inp.campaign_id,
        tenant_id=inp.tenant_id,
        content=content,
        halt=HaltWatch(inp.run_id, inp.epoch),
    )
    await page.send(messages)
    async with deps.engine.begin() as conn:
        await rollups.roll_up(conn, campaign_id=inp.campaign_id)
    page.raise_if_provider_down()
    sent = await sent_recipients(deps, inp.campaign_id)
    if page.halted:
        return SendBatchResult(
            page_complete=False,
            exhausted=False,
            next_cursor=inp.after,
            recipients=0,
            counts=Counts(),
            sent_recipients=sent,
        )
    async with deps.engine.connect() as conn:
        by_outcome = await page_outcomes(conn, bounds)
    return SendBatchResult(
        page_complete=True,
        exhausted=len(rows) < limit,
        next_cursor=rows[-1]["id"],
        recipients=len(rows),
        counts=Counts(
            sent=by_outcome.get(Outcome.SENT, 0),
            skipped=by_outcome.get(Outcome.SKIPPED, 0),
            failed=by_outcome.get(Outcome.FAILED, 0),
            bounced=by_outcome.get(Outcome.BOUNCED, 0),
            unknown=by_outcome.get(Outcome.UNKNOWN, 0),
        ),
        sent_recipients=sent,
    )


async def _unsent(
    deps: ActivityDeps, inp: SendBatchInput, rows: Sequence[RowMapping], content: Content, bounds: PageBounds
) -> list[Message]:
    """The page's messages that still need a provider call; the gates' skips are written now.

    A message with a row is done, except an in-flight SMS kept PENDING for an idempotent provider:
    it goes out again under its id, past the gates (its consent was checked when it was claimed)."""
    keep_sms = deps.settings.sms_idempotent
    async with deps.engine.begin() as conn:
        existing = await settle_orphans(conn, bounds, keep_sms=keep_sms)
        rows_by_key = {(r.run_id, r.customer_id, r.channel): r for r in existing}
        fresh: list[Message] = []
        again: list[Message] = []
        for row in rows:
            for channel in content.channels:
                found = rows_by_key.get((row["run_id"], row["id"], channel))
                if found is None:
                    fresh.append(Message(row, channel))
                elif found.outcome == Outcome.PENDING:
                    again.append(Message(row, channel, delivery_id=found.id))
        screened = await screen(default_gates(), fresh)
        finals = [
            m.final(new_id("delivery"), Outcome.SKIPPED, reason.value) for m, reason in screened.skipped
        ]
        await insert_finals(conn, campaign_id=inp.campaign_id, tenant_id=inp.tenant_id, rows=finals)
    return again + screened.admitted


async def sent_recipients(deps: ActivityDeps, campaign_id: str) -> int:
    """Recipients the campaign has sent to so far (its roll-up), for the workflow's progress."""
    async with deps.engine.connect() as conn:
        counters = await rollups.counters_for(conn, campaign_id)
    return counters.get((rollups.ALL, InteractionType.SENT.value), (0, 0))[0]
