"""resend_unknown: the operator's explicit resend of a campaign's UNKNOWN deliveries.

README "Delivery guarantees (the ledger)" says what UNKNOWN means and when a resend is safe.

UNKNOWN means a crash swallowed the provider's answer: the message may have arrived. It is never
resent automatically; an operator who accepts the risk of a duplicate asks for it. The resend
reuses each delivery's id, so the SMS provider (which dedupes on the idempotency key) drops the
ones it already has; an email may arrive twice, which is the documented price.

The same pipeline as a page sends them; its source is the UNKNOWN rows, and a claim flips a row
UNKNOWN -> PENDING (db.ledger.resends), so two resends (or a retried attempt) never send a row
twice; a crash mid-resend leaves PENDING rows, which the next resend turns back into UNKNOWN first.
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
        if inp.after is None:
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
        return ResendResult(
            next_after=rows[-1]["delivery_id"] if rows else inp.after,
            resent=page.sent if page is not None else 0,
            done=len(rows) < limit,
        )
