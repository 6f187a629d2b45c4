"""resend_unknown: the operator's explicit resend of a campaign's UNKNOWN deliveries.

README "Delivery guarantees (the ledger)" says what UNKNOWN means and when a resend is safe.

UNKNOWN means a crash swallowed the provider's answer: the message may have arrived. It is never
resent automatically; an operator who accepts the risk of a duplicate asks for it. The resend
reuses each delivery's id, so the SMS provider (which dedupes on the idempotency key) drops the
ones it already has; an email may arrive twice, which is the documented price.

Each row is claimed by flipping UNKNOWN -> PENDING before the provider call, so two resends (or a
retried attempt) never send a row twice; a crash mid-resend leaves PENDING rows, which the next
resend turns back into UNKNOWN first (never sent twice silently).
"""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from activities.sending import RECIPIENT_COLUMNS, Message, Outgoing, _Page, skip_reason
from core.messages import ResendInput, ResendResult, SendBatchInput
from db import rollups

_ROWS = text(
    f"""
    SELECT d.id AS delivery_id, d.run_id, d.channel, d.customer_id AS id, {RECIPIENT_COLUMNS}
    FROM deliveries d
    LEFT JOIN customers c ON c.id = d.customer_id AND c.tenant_id = :tenant
    WHERE d.campaign_id = :campaign AND d.outcome = 'UNKNOWN'
      AND (CAST(:after AS text) IS NULL OR d.id > :after)
    ORDER BY d.id
    LIMIT :limit
    """
)
# PENDING rows of this campaign outside any running send: a resend attempt that died.
_REVERT_DEAD = text(
    "UPDATE deliveries SET outcome = 'UNKNOWN', updated_at = now()"
    " WHERE campaign_id = :campaign AND outcome = 'PENDING'"
)
_CLAIM_UNKNOWN = text(
    "UPDATE deliveries SET outcome = 'PENDING', claimed_at = now(), updated_at = now()"
    " WHERE id = ANY(:ids) AND outcome = 'UNKNOWN' RETURNING id"
)
_SKIP = text(
    "UPDATE deliveries SET outcome = 'SKIPPED', reason = :reason, updated_at = now()"
    " WHERE id = :id AND outcome = 'UNKNOWN'"
)
_RECOUNT = text(
    """
    UPDATE campaigns SET
        unknown_count = (SELECT count(*) FROM deliveries WHERE campaign_id = :c AND outcome = 'UNKNOWN'),
        skipped_count = (SELECT count(*) FROM deliveries WHERE campaign_id = :c AND outcome = 'SKIPPED'),
        updated_at = now()
    WHERE id = :c
    """
)


class _Resend(_Page):
    """A send page whose messages already have ledger rows (UNKNOWN) and keep their ids."""

    # UNKNOWN -> PENDING cannot tell this claim's rows from a dead attempt's: not retried.
    claim_is_idempotent = False
    release_sql = text(
        "UPDATE deliveries SET outcome = 'UNKNOWN', updated_at = now()"
        " WHERE id = ANY(:ids) AND outcome = 'PENDING'"
    )

    def __init__(self, deps: ActivityDeps, inp: ResendInput) -> None:
        super().__init__(
            deps,
            SendBatchInput(
                campaign_id=inp.campaign_id, tenant_id=inp.tenant_id, run_id="", after=None, epoch=0
            ),
        )
        self.delivery_ids: dict[tuple[str, str], str] = {}

    def _outgoing(self, message: Message) -> Outgoing:
        return Outgoing(
            message=message, delivery_id=self.delivery_ids[(message.customer["id"], message.channel)]
        )

    async def _claim(self, items: list[Outgoing]) -> list[Outgoing]:
        if not items:
            return []
        async with self.deps.engine.begin() as conn:
            won = {r[0] for r in await conn.execute(_CLAIM_UNKNOWN, {"ids": [i.delivery_id for i in items]})}
        return [i for i in items if i.delivery_id in won]

    async def resend(self, rows: Sequence[Any]) -> int:
        content = await self._content()
        messages: list[Message] = []
        async with self.deps.engine.begin() as conn:
            for row in rows:
                reason = skip_reason(row, row["channel"])
                if reason is not None:  # unsubscribed or bounced since: do not resend
                    await conn.execute(_SKIP, {"id": row["delivery_id"], "reason": reason.value})
                    continue
                self.delivery_ids[(row["id"], row["channel"])] = row["delivery_id"]
                messages.append(Message(row, row["channel"]))
        await self._send_all(messages, content)
        return self.sent


class ResendActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="resend_unknown")
    async def resend_unknown(self, inp: ResendInput) -> ResendResult:
        engine = self._deps.engine
        if inp.after is None:
            async with engine.begin() as conn:
                await conn.execute(_REVERT_DEAD, {"campaign": inp.campaign_id})
        async with engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        _ROWS,
                        {
                            "tenant": inp.tenant_id,
                            "campaign": inp.campaign_id,
                            "after": inp.after,
                            "limit": self._deps.settings.batch_size,
                        },
                    )
                )
                .mappings()
                .all()
            )
        page = _Resend(self._deps, inp)
        sent = await page.resend(rows) if rows else 0
        async with engine.begin() as conn:
            await rollups.roll_up(conn, campaign_id=inp.campaign_id)
            await conn.execute(_RECOUNT, {"c": inp.campaign_id})
        if page.provider_down is not None:
            raise ApplicationError(f"provider unavailable: {page.provider_down}")
        done = len(rows) < self._deps.settings.batch_size
        return ResendResult(next_after=rows[-1]["delivery_id"] if rows else inp.after, resent=sent, done=done)
