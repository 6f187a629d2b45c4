"""send_batch: one page of a run's recipients through the send pipeline (activities.send).

Exactly-once as far as the outside world allows (README "Delivery guarantees (the ledger)"):
- a message is claimed (a PENDING row) only as a provider slot takes it and answered as soon as
  the provider answers, so a crash leaves at most 2 x slots of each channel PENDING;
- a retried page turns PENDING rows (a dead attempt's in-flight messages) into UNKNOWN and never
  resends them, except SMS when the provider deduplicates on the key (`CAMPAIGNS_SMS_IDEMPOTENT`):
  those are posted again under the same id; every row that has an outcome is skipped;
- pause/cancel raise `halt_epoch`; the page stops starting messages within ~100 ms, lets the
  in-flight ones finish and returns with `page_complete=False`, so resume re-reads the page.

The campaign's sending policies are gates (activities.send.policy_gates): a message inside quiet
hours is held back (db.policies.hold_messages) and sent by a later sweep (`send_held`).
"""

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy.engine import RowMapping
from temporalio import activity

from activities.deps import ActivityDeps
from activities.send.gates import screen
from activities.send.model import Content, Message
from activities.send.page import HaltWatch, SendPage, load_content
from activities.send.policy_gates import When, campaign_gates
from activities.send.seeds import send_seed_copies
from activities.send.throttle import account_of
from core.enums import Channel, InteractionType, Outcome
from core.ids import new_id
from core.messages import Counts, SendBatchInput, SendBatchResult, SendHeldInput
from core.policy import Effective, defaults
from db import policies, rollups
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

    @activity.defn(name="send_held")
    async def send_held(self, inp: SendHeldInput) -> SendBatchResult:
        """One page of a sweep: the held messages due at `inp.now`, through the gates again (a
        message still inside quiet hours, e.g. in another zone, is held again)."""
        deps = self._deps
        limit = deps.settings.batch_size
        async with deps.engine.begin() as conn:
            rows = await policies.take_due(
                conn,
                campaign_id=inp.campaign_id,
                tenant_id=inp.tenant_id,
                sweep=inp.sweep,
                now=inp.now,
                limit=limit,
            )
        content = await load_content(
            deps,
            campaign_id=inp.campaign_id,
            tenant_id=inp.tenant_id,
            run_id=rows[0]["run_id"] if rows else "",
        )
        page_complete = True
        auto_pause, answered, refused = None, 0, 0
        if rows:
            when = When(inp.now, inp.anchor)
            page = await _send(deps, inp, rows, content, _bounds(rows), when, channels_of=_held_channel)
            page_complete = not page.halted
            auto_pause, answered, refused = page.auto_pause, page.pipeline.answered, page.pipeline.refused
        async with deps.engine.connect() as conn:
            by_outcome = await policies.sweep_outcomes(conn, inp.campaign_id, inp.sweep)
            held_until = await policies.next_due(conn, inp.campaign_id)
        return SendBatchResult(
            page_complete=page_complete,
            exhausted=len(rows) < limit,
            next_cursor=None,
            recipients=0,
            counts=_counts(by_outcome) if page_complete else Counts(),
            sent_recipients=await sent_recipients(deps, inp.campaign_id),
            held_until=held_until,
            auto_pause=auto_pause,
            answered=answered,
            refused=refused,
        )


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
    bounds = _bounds(rows)
    when = When(inp.now or datetime.now(UTC), inp.anchor)
    page = await _send(deps, inp, rows, content, bounds, when, channels_of=lambda _row: content.channels)
    sent = await sent_recipients(deps, inp.campaign_id)
    if page.halted:  # paused, cancelled or out of time: sent again later, its answers judged now
        return SendBatchResult(
            page_complete=False,
            exhausted=False,
            next_cursor=inp.after,
            recipients=0,
            counts=Counts(),
            sent_recipients=sent,
            auto_pause=page.auto_pause,
            answered=page.pipeline.answered,
            refused=page.pipeline.refused,
        )
    async with deps.engine.connect() as conn:
        by_outcome = await page_outcomes(conn, bounds)
        held_until = await policies.next_due(conn, inp.campaign_id) if page.held else None
    return SendBatchResult(
        page_complete=True,
        exhausted=len(rows) < limit,
        next_cursor=rows[-1]["id"],
        recipients=len(rows),
        counts=_counts(by_outcome),
        sent_recipients=sent,
        held=page.held,
        held_until=held_until,
        auto_pause=page.auto_pause,
        answered=page.pipeline.answered,
        refused=page.pipeline.refused,
        awaiting_winner=page.awaiting_winner,
        rate=current_rate(deps, tenant_id=inp.tenant_id, channels=content.channels),
    )


def _held_channel(row: RowMapping) -> list[str]:
    """A held row is one message: the channel quiet hours held."""
    return [row["held_channel"]]


def _bounds(rows: Sequence[RowMapping]) -> PageBounds:
    """What a page's rows cover in the ledger: their runs and customer id range."""
    customers = [r["id"] for r in rows]
    return PageBounds(sorted({r["run_id"] for r in rows}), min(customers), max(customers))


def _counts(by_outcome: dict[str, int]) -> Counts:
    return Counts(
        sent=by_outcome.get(Outcome.SENT, 0),
        skipped=by_outcome.get(Outcome.SKIPPED, 0),
        failed=by_outcome.get(Outcome.FAILED, 0),
        bounced=by_outcome.get(Outcome.BOUNCED, 0),
        unknown=by_outcome.get(Outcome.UNKNOWN, 0),
    )


async def _send(
    deps: ActivityDeps,
    inp: SendBatchInput | SendHeldInput,
    rows: Sequence[RowMapping],
    content: Content,
    bounds: PageBounds,
    when: When,
    *,
    channels_of: Callable[[RowMapping], Sequence[str]],
) -> SendPage:
    """Screen the rows' messages, send the admitted ones, roll up; the page says how it went.
    Pause and cancel halt it through the halt epoch of `inp`'s run."""
    campaign_id, tenant_id, halt = inp.campaign_id, inp.tenant_id, HaltWatch(inp.run_id, inp.epoch)
    policy = await page_policy(deps, campaign_id, tenant_id)
    messages, held = await _unsent(deps, campaign_id, tenant_id, rows, bounds, when, policy, channels_of)
    page = SendPage(
        deps,
        campaign_id=campaign_id,
        tenant_id=tenant_id,
        content=content,
        halt=halt,
        rate_weight=policy.rate_weight,
    )
    page.held = held
    page.auto_pause = policy.auto_pause
    test = policy.ab_test
    page.awaiting_winner = bool(held and test and test.winner is None and policy.ab_winner is None)
    await page.send(messages)
    if messages and (policy.seeds.emails or policy.seeds.phones) and not page.halted:
        await send_seed_copies(
            deps,
            campaign_id=campaign_id,
            tenant_id=tenant_id,
            content=content,
            messages=messages,
            seeds=policy.seeds,
        )
    async with deps.engine.begin() as conn:
        await rollups.roll_up(conn, campaign_id=campaign_id)
    page.raise_if_provider_down()
    return page


def current_rate(deps: ActivityDeps, *, tenant_id: str, channels: Sequence[str]) -> float | None:
    """The tenant's pace on the slowest rate-limited account among the channels (msg/s)."""
    rates = [deps.throttle.rate(account_of(Channel(ch)), tenant_id) for ch in channels]
    known = [r for r in rates if r is not None]
    return min(known) if known else None


async def page_policy(deps: ActivityDeps, campaign_id: str, tenant_id: str) -> Effective:
    """The campaign's effective sending policy (the tenant's rules with its overrides)."""
    async with deps.engine.connect() as conn:
        return await policies.effective_policy(
            conn, campaign_id, tenant_id, defaults(deps.settings.sms_quiet_hours_default)
        )


async def _unsent(
    deps: ActivityDeps,
    campaign_id: str,
    tenant_id: str,
    rows: Sequence[RowMapping],
    bounds: PageBounds,
    when: When,
    policy: Effective,
    channels_of: Callable[[RowMapping], Sequence[str]],
) -> tuple[list[Message], int]:
    """The page's messages that still need a provider call, and how many quiet hours held back;
    the gates' skips and holds are written now, in one transaction with the frequency holds.

    A message with a row is done, except an in-flight SMS kept PENDING for an idempotent provider:
    it goes out again under its id, past the gates (its consent was checked when it was claimed)."""
    keep_sms = deps.settings.sms_idempotent
    async with deps.engine.begin() as conn:
        existing = await settle_orphans(conn, bounds, keep_sms=keep_sms)
        rows_by_key = {(r.run_id, r.customer_id, r.channel): r for r in existing}
        fresh: list[Message] = []
        again: list[Message] = []
        for row in rows:
            for channel in channels_of(row):
                found = rows_by_key.get((row["run_id"], row["id"], channel))
                if found is None:
                    fresh.append(Message(row, channel))
                elif found.outcome == Outcome.PENDING:
                    again.append(Message(row, channel, delivery_id=found.id))
        screened = await screen(campaign_gates(policy, conn, tenant_id, campaign_id, when), fresh)
        finals = [
            m.final(new_id("delivery"), Outcome.SKIPPED, reason.value) for m, reason in screened.skipped
        ]
        await insert_finals(conn, campaign_id=campaign_id, tenant_id=tenant_id, rows=finals)
        held = [policies.Held(m.run_id, m.customer_id, m.channel, until) for m, until in screened.held]
        await policies.hold_messages(conn, campaign_id=campaign_id, tenant_id=tenant_id, held=held)
    admitted = again + screened.admitted
    test = policy.ab_test
    if test is not None:  # each message carries its variant (the gate held those without one)
        admitted = [
            replace(m, variant=test.assign(campaign_id, m.customer_id, policy.ab_winner)) for m in admitted
        ]
    return admitted, len(held)


async def sent_recipients(deps: ActivityDeps, campaign_id: str) -> int:
    """Recipients the campaign has sent to so far (its roll-up), for the workflow's progress."""
    async with deps.engine.connect() as conn:
        counters = await rollups.counters_for(conn, campaign_id)
    return counters.get((rollups.ALL, InteractionType.SENT.value), (0, 0))[0]
