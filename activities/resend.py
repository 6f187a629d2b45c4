"""resend_unknown: the operator's explicit resend of a campaign's UNKNOWN deliveries.

README "Delivery guarantees (the ledger)" says what UNKNOWN means and when a resend is safe.

UNKNOWN means a crash swallowed the provider's answer: the message may have arrived. It is never
resent automatically; an operator who accepts the risk of a duplicate asks for it. The resend
reuses each delivery's id, so the SMS provider (which dedupes on the idempotency key) drops the
ones it already has; an email may arrive twice, which is the documented price.

The same pipeline as a page sends them; its source is the UNKNOWN rows, and a claim flips a row
UNKNOWN -> PENDING (db.ledger.resends), so two attempts running at once (a resend and a second
one, or an attempt thought dead) never both send a row. A crash mid-resend leaves PENDING rows
(maybe sent): the retried attempt turns them back into UNKNOWN first and sends them with the rest
of its page (the operator asked for every one of them to be sent again; an SMS goes under the same
key), and the first page of the next resend does the same for a resend that died for good. A page
that reaches its time budget (activities.send.page) returns its own cursor: the next activity
reads the rows still UNKNOWN from the same place.
"""

from temporalio import activity

from activities.deps import ActivityDeps
from activities.send.gates import default_gates, screen
from activities.send.model import Message
from activities.send.page import SendPage, load_content
from core.messages import ResendInput, ResendResult
from db import rollups
from db.ledger.resends import recount, revert_dead_claims, skip_unknown, unknown_rows


class ResendActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="resend_unknown")
    async def resend_unknown(self, inp: ResendInput) -> ResendResult:
        deps = self._deps
        limit = deps.settings.batch_size
        if inp.after is None or activity.info().attempt > 1:
            async with deps.engine.begin() as conn:
                await revert_dead_claims(conn, inp.campaign_id)
        async with deps.engine.connect() as conn:
            rows = await unknown_rows(
                conn, tenant_id=inp.tenant_id, campaign_id=inp.campaign_id, after=inp.after, limit=limit
            )
        page = None
        if rows:
            # The current templates: a resend sends what the campaign says now (run "" pins none).
            content = await load_content(
                deps, campaign_id=inp.campaign_id, tenant_id=inp.tenant_id, run_id=""
            )
            messages = [Message(r, r["channel"], delivery_id=r["delivery_id"]) for r in rows]
            screened = await screen(default_gates(), messages)
            async with deps.engine.begin() as conn:
                # Unsubscribed or bounced since: not resent.
                skips = [(str(m.delivery_id), reason.value) for m, reason in screened.skipped]
                await skip_unknown(conn, skips)
            page = SendPage(
                deps,
                campaign_id=inp.campaign_id,
                tenant_id=inp.tenant_id,
                content=content,
                halt=None,
                existing_rows=True,
            )
            await page.send(screened.admitted)
        async with deps.engine.begin() as conn:
            await rollups.roll_up(conn, campaign_id=inp.campaign_id)
            await recount(conn, inp.campaign_id)
        if page is not None:
            page.raise_if_provider_down()
        halted = page is not None and page.halted  # out of time: the rest of these rows, again
        return ResendResult(
            next_after=rows[-1]["delivery_id"] if rows and not halted else inp.after,
            resent=page.sent if page is not None else 0,
            done=not halted and len(rows) < limit,
        )
