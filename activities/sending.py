"""send_batch: one page of recipients, each message claimed in the ledger before the provider call.

Exactly-once as far as the outside world allows (contract §8):
- a message is claimed (INSERT ... ON CONFLICT DO NOTHING) right before the provider call and
  marked right after the answer, so a crash leaves at most the in-flight messages PENDING;
- a retried page turns PENDING rows (a dead attempt's in-flight messages) into UNKNOWN and
  never resends them, and skips every row that already has an outcome;
- pause/cancel raise `halt_epoch`; the page stops starting messages within ~100 ms, lets the
  in-flight ones finish and returns with `page_complete=False`, so resume re-reads the page.
"""

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from core.constants import ERR_CAMPAIGN_INVALID
from core.enums import Channel, InteractionType, Outcome, SkipReason
from core.ids import new_id
from core.messages import Counts, SendBatchInput, SendBatchResult
from db import rollups
from providers.email_content import EmailEnvelope, build_email, render_parts
from providers.rendering import TemplateSyntaxProblem, recipient_context, render
from providers.sms import SmsVerdict
from providers.smtp import SmtpVerdict

log = logging.getLogger(__name__)

HALT_POLL_SECONDS = 0.1
HEARTBEAT_SECONDS = 1.0
TEMPORARY_RETRIES = 3


@dataclass(frozen=True)
class Content:
    channels: list[str]
    email: RowMapping | None
    sms: RowMapping | None


@dataclass
class Message:
    customer: RowMapping
    channel: str


class ProviderUnavailable(Exception):
    """Nothing could be handed to a provider; the page is retried later by Temporal."""


_PAGE = text(
    """
    SELECT rr.customer_id AS id, c.id AS present, c.email, c.phone, c.first_name, c.last_name,
           c.club_id, c.external_id, c.attributes, c.email_opt_in, c.sms_opt_in,
           c.email_unsubscribed_at, c.sms_unsubscribed_at, c.email_bounced_at
    FROM run_recipients rr
    LEFT JOIN customers c ON c.id = rr.customer_id AND c.tenant_id = :tenant
    WHERE rr.run_id = :run AND (CAST(:after AS text) IS NULL OR rr.customer_id > :after)
    ORDER BY rr.customer_id
    LIMIT :limit
    """
)
_EXISTING = text(
    "SELECT customer_id, channel, outcome FROM deliveries"
    " WHERE run_id = :run AND customer_id BETWEEN :first AND :last"
)
_ORPHANS = text(
    "UPDATE deliveries SET outcome = 'UNKNOWN', reason = 'CRASHED_IN_FLIGHT', updated_at = now()"
    " WHERE run_id = :run AND customer_id BETWEEN :first AND :last AND outcome = 'PENDING'"
)
_INSERT_FINAL = text(
    """
    INSERT INTO deliveries (id, run_id, campaign_id, tenant_id, customer_id, channel, outcome,
                            reason, detail, address)
    VALUES (:id, :run, :campaign, :tenant, :customer, :channel, :outcome, :reason, :detail,
            :address)
    ON CONFLICT (run_id, customer_id, channel) DO NOTHING
    """
)
_CLAIM = text(
    """
    INSERT INTO deliveries (id, run_id, campaign_id, tenant_id, customer_id, channel, outcome,
                            address, claimed_at)
    VALUES (:id, :run, :campaign, :tenant, :customer, :channel, 'PENDING', :address, now())
    ON CONFLICT (run_id, customer_id, channel) DO NOTHING
    RETURNING id
    """
)
_RELEASE = text("DELETE FROM deliveries WHERE id = :id AND outcome = 'PENDING'")
_MARK = text(
    """
    WITH d AS (
        UPDATE deliveries
        SET outcome = :outcome, reason = :reason, detail = :detail, sent_at = :sent_at,
            provider_message_id = :pmid, updated_at = now()
        WHERE id = :id
        RETURNING id, tenant_id, campaign_id, customer_id, channel
    )
    INSERT INTO interactions (id, tenant_id, campaign_id, delivery_id, customer_id, channel,
                              type, occurred_at, metadata)
    SELECT :iid, tenant_id, campaign_id, id, customer_id, channel, CAST(:itype AS varchar), :at,
           CAST(:meta AS jsonb)
    FROM d WHERE CAST(:itype AS varchar) IS NOT NULL
    """
)
_PAGE_COUNTS = text(
    "SELECT outcome, count(*) FROM deliveries"
    " WHERE run_id = :run AND customer_id BETWEEN :first AND :last GROUP BY outcome"
)


def skip_reason(customer: RowMapping, channel: str) -> SkipReason | None:
    """Why a recipient gets nothing on a channel (contract §7), or None when eligible."""
    if customer["present"] is None:
        return SkipReason.CUSTOMER_DELETED
    if channel == Channel.EMAIL:
        if not customer["email"]:
            return SkipReason.NO_ADDRESS
        if customer["email_unsubscribed_at"] is not None:
            return SkipReason.UNSUBSCRIBED
        if customer["email_bounced_at"] is not None:
            return SkipReason.HARD_BOUNCED
        if not customer["email_opt_in"]:
            return SkipReason.NO_CONSENT
        return None
    if not customer["phone"]:
        return SkipReason.NO_ADDRESS
    if customer["sms_unsubscribed_at"] is not None:
        return SkipReason.UNSUBSCRIBED
    if not customer["sms_opt_in"]:
        return SkipReason.NO_CONSENT
    return None


class SendingActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="send_batch")
    async def send_batch(self, inp: SendBatchInput) -> SendBatchResult:
        page = _Page(self._deps, inp)
        return await page.run()


class _Page:
    def __init__(self, deps: ActivityDeps, inp: SendBatchInput) -> None:
        self.deps = deps
        self.inp = inp
        self.halted = asyncio.Event()
        self.provider_down: str | None = None
        self.sent = 0

    async def run(self) -> SendBatchResult:
        engine = self.deps.engine
        inp = self.inp
        content = await self._content()
        async with engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        _PAGE,
                        {
                            "tenant": inp.tenant_id,
                            "run": inp.run_id,
                            "after": inp.after,
                            "limit": self.deps.settings.batch_size,
                        },
                    )
                )
                .mappings()
                .all()
            )
        if not rows:
            return SendBatchResult(
                page_complete=True,
                exhausted=True,
                next_cursor=inp.after,
                recipients=0,
                counts=Counts(),
                sent_recipients=await self._sent_recipients(),
            )
        bounds = {"run": inp.run_id, "first": rows[0]["id"], "last": rows[-1]["id"]}
        async with engine.begin() as conn:
            # A dead attempt's in-flight messages: maybe delivered, so never resent (§8).
            await conn.execute(_ORPHANS, bounds)
            existing = {(r[0], r[1]) for r in await conn.execute(_EXISTING, bounds)}
            finals, to_send = self._triage(rows, content, existing)
            if finals:
                await conn.execute(_INSERT_FINAL, finals)
        if await self._halt_requested():
            self.halted.set()  # paused/cancelled before this attempt began: send nothing
        watchers = [
            asyncio.create_task(self._watch_halt()),
            asyncio.create_task(self._heartbeat()),
        ]
        try:
            await self._send_all(to_send, content)
        finally:
            for task in watchers:
                task.cancel()
            for task in watchers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        async with engine.begin() as conn:
            await rollups.roll_up(conn, campaign_id=inp.campaign_id)
        if self.provider_down is not None:
            raise ApplicationError(f"provider unavailable: {self.provider_down}")
        sent_recipients = await self._sent_recipients()
        if self.halted.is_set():
            return SendBatchResult(
                page_complete=False,
                exhausted=False,
                next_cursor=inp.after,
                recipients=0,
                counts=Counts(),
                sent_recipients=sent_recipients,
            )
        async with engine.connect() as conn:
            by_outcome = {r[0]: int(r[1]) for r in await conn.execute(_PAGE_COUNTS, bounds)}
        counts = Counts(
            sent=by_outcome.get(Outcome.SENT, 0),
            skipped=by_outcome.get(Outcome.SKIPPED, 0),
            failed=by_outcome.get(Outcome.FAILED, 0),
            bounced=by_outcome.get(Outcome.BOUNCED, 0),
            unknown=by_outcome.get(Outcome.UNKNOWN, 0),
        )
        return SendBatchResult(
            page_complete=True,
            exhausted=len(rows) < self.deps.settings.batch_size,
            next_cursor=rows[-1]["id"],
            recipients=len(rows),
            counts=counts,
            sent_recipients=sent_recipients,
        )

    async def _content(self) -> Content:
        async with self.deps.engine.connect() as conn:
            campaign = (
                (
                    await conn.execute(
                        text(
                            "SELECT channels, email_template_id, sms_template_id FROM campaigns"
                            " WHERE id = :c AND tenant_id = :t"
                        ),
                        {"c": self.inp.campaign_id, "t": self.inp.tenant_id},
                    )
                )
                .mappings()
                .first()
            )
            if campaign is None:
                raise ApplicationError("campaign not found", type=ERR_CAMPAIGN_INVALID, non_retryable=True)
            templates: dict[str, RowMapping | None] = {}
            for channel, template_id in (
                (Channel.EMAIL, campaign["email_template_id"]),
                (Channel.SMS, campaign["sms_template_id"]),
            ):
                templates[channel] = None
                if channel in campaign["channels"]:
                    templates[channel] = (
                        (
                            await conn.execute(
                                text(
                                    "SELECT subject, html, text, body FROM templates"
                                    " WHERE id = :id AND tenant_id = :t AND channel = :ch"
                                ),
                                {"id": template_id, "t": self.inp.tenant_id, "ch": channel},
                            )
                        )
                        .mappings()
                        .first()
                    )
                    if templates[channel] is None:
                        raise ApplicationError(
                            f"the {channel} template of the campaign no longer exists",
                            type=ERR_CAMPAIGN_INVALID,
                            non_retryable=True,
                        )
        return Content(list(campaign["channels"]), templates[Channel.EMAIL], templates[Channel.SMS])

    def _triage(
        self, rows: Sequence[RowMapping], content: Content, existing: set[tuple[str, str]]
    ) -> tuple[list[dict[str, Any]], list[Message]]:
        finals: list[dict[str, Any]] = []
        to_send: list[Message] = []
        for row in rows:
            for channel in content.channels:
                if (row["id"], channel) in existing:
                    continue
                reason = skip_reason(row, channel)
                if reason is None:
                    to_send.append(Message(row, channel))
                    continue
                finals.append(self._row(row, channel, Outcome.SKIPPED, reason=reason.value))
        return finals, to_send

    def _row(
        self,
        customer: RowMapping,
        channel: str,
        outcome: Outcome,
        *,
        reason: str | None = None,
        detail: str | None = None,
    ) -> dict[str, Any]:
        return {
            "id": new_id("delivery"),
            "run": self.inp.run_id,
            "campaign": self.inp.campaign_id,
            "tenant": self.inp.tenant_id,
            "customer": customer["id"],
            "channel": channel,
            "outcome": outcome.value,
            "reason": reason,
            "detail": detail,
            "address": _address(customer, channel),
        }

    async def _send_all(self, messages: list[Message], content: Content) -> None:
        queue: Iterator[Message] = iter(messages)

        async def worker() -> None:
            for message in queue:
                if self.halted.is_set() or self.provider_down is not None:
                    return
                await self._send_one(message, content)

        workers = [worker() for _ in range(min(self.deps.settings.send_concurrency, len(messages)))]
        await asyncio.gather(*workers)

    async def _send_one(self, message: Message, content: Content) -> None:
        engine = self.deps.engine
        customer, channel = message.customer, message.channel
        ctx = recipient_context(dict(customer))
        try:
            if channel == Channel.EMAIL:
                assert content.email is not None
                parts = render_parts(
                    content.email["subject"], content.email["html"], content.email["text"], ctx
                )
            else:
                assert content.sms is not None
                body = render(content.sms["body"], ctx)
        except TemplateSyntaxProblem as err:
            async with engine.begin() as conn:
                row = self._row(
                    customer,
                    channel,
                    Outcome.FAILED,
                    reason="TEMPLATE_ERROR",
                    detail=str(err)[:500],
                )
                await conn.execute(_INSERT_FINAL, row)
            return
        delivery_id = new_id("delivery")
        async with engine.begin() as conn:
            claimed = (
                await conn.execute(
                    _CLAIM,
                    {
                        "id": delivery_id,
                        "run": self.inp.run_id,
                        "campaign": self.inp.campaign_id,
                        "tenant": self.inp.tenant_id,
                        "customer": customer["id"],
                        "channel": channel,
                        "address": _address(customer, channel),
                    },
                )
            ).first()
        if claimed is None:
            return  # another attempt owns this message
        if channel == Channel.EMAIL:
            await self._deliver_email(delivery_id, customer, parts)
        else:
            await self._deliver_sms(delivery_id, customer, body)

    async def _deliver_email(self, delivery_id: str, customer: RowMapping, parts: Any) -> None:
        envelope = EmailEnvelope(
            delivery_id=delivery_id,
            campaign_id=self.inp.campaign_id,
            tenant_id=self.inp.tenant_id,
            customer_id=customer["id"],
            sender=self.deps.settings.email_from,
            to=customer["email"],
        )
        message = build_email(envelope, parts, self.deps.settings)
        for attempt in range(TEMPORARY_RETRIES + 1):
            result = await self.deps.smtp.send(message)
            if result.verdict != SmtpVerdict.TEMPORARY or attempt == TEMPORARY_RETRIES:
                break
            await asyncio.sleep(0.2 * (2**attempt))
        if result.verdict == SmtpVerdict.ACCEPTED:
            await self._mark(delivery_id, Outcome.SENT, itype=InteractionType.SENT, pmid=result.message_id)
        elif result.verdict == SmtpVerdict.REFUSED:
            await self._mark(
                delivery_id,
                Outcome.BOUNCED,
                reason=SkipReason.HARD_BOUNCED.value,
                detail=result.detail,
                itype=InteractionType.BOUNCED,
            )
            async with self.deps.engine.begin() as conn:
                await conn.execute(
                    text("UPDATE customers SET email_bounced_at = now() WHERE id = :id"),
                    {"id": customer["id"]},
                )
        elif result.verdict == SmtpVerdict.TEMPORARY:
            await self._mark(
                delivery_id,
                Outcome.FAILED,
                reason=SkipReason.PROVIDER_ERROR.value,
                detail=result.detail,
                itype=InteractionType.FAILED,
            )
        elif result.verdict == SmtpVerdict.NOT_SENT:
            await self._release(delivery_id, result.detail)
        else:
            await self._mark(delivery_id, Outcome.UNKNOWN, reason="CONNECTION_LOST", detail=result.detail)

    async def _deliver_sms(self, delivery_id: str, customer: RowMapping, body: str) -> None:
        result = await self.deps.sms.send(customer["phone"], body, delivery_id)
        if result.verdict == SmsVerdict.ACCEPTED:
            await self._mark(delivery_id, Outcome.SENT, itype=InteractionType.SENT, pmid=result.message_id)
        elif result.verdict == SmsVerdict.REJECTED:
            await self._mark(
                delivery_id,
                Outcome.FAILED,
                reason=SkipReason.PROVIDER_ERROR.value,
                detail=result.detail,
                itype=InteractionType.FAILED,
            )
        elif result.verdict == SmsVerdict.NOT_SENT:
            await self._release(delivery_id, result.detail)
        else:
            await self._mark(delivery_id, Outcome.UNKNOWN, reason="CONNECTION_LOST", detail=result.detail)

    async def _release(self, delivery_id: str, detail: str) -> None:
        """Nothing left the client: drop the claim so a later attempt sends it (once)."""
        async with self.deps.engine.begin() as conn:
            await conn.execute(_RELEASE, {"id": delivery_id})
        self.provider_down = detail or "provider unreachable"

    async def _mark(
        self,
        delivery_id: str,
        outcome: Outcome,
        *,
        reason: str | None = None,
        detail: str | None = None,
        itype: InteractionType | None = None,
        pmid: str | None = None,
    ) -> None:
        now = datetime.now(UTC)
        async with self.deps.engine.begin() as conn:
            await conn.execute(
                _MARK,
                {
                    "id": delivery_id,
                    "outcome": outcome.value,
                    "reason": reason,
                    "detail": (detail or "")[:500] or None,
                    "sent_at": now if outcome == Outcome.SENT else None,
                    "pmid": pmid,
                    "iid": new_id("interaction"),
                    "itype": itype.value if itype else None,
                    "at": now,
                    "meta": "{}",
                },
            )
        if outcome == Outcome.SENT:
            self.sent += 1

    async def _halt_requested(self) -> bool:
        async with self.deps.engine.connect() as conn:
            halt = (
                await conn.execute(
                    text("SELECT halt_epoch FROM send_runs WHERE id = :r"), {"r": self.inp.run_id}
                )
            ).scalar_one_or_none()
        return halt is not None and halt >= self.inp.epoch

    async def _watch_halt(self) -> None:
        while not self.halted.is_set():
            if await self._halt_requested():
                self.halted.set()
                return
            await asyncio.sleep(HALT_POLL_SECONDS)

    async def _heartbeat(self) -> None:
        while True:
            activity.heartbeat(self.sent)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _sent_recipients(self) -> int:
        async with self.deps.engine.connect() as conn:
            counters = await rollups.counters_for(conn, self.inp.campaign_id)
        return counters.get((rollups.ALL, InteractionType.SENT.value), (0, 0))[0]


def _address(customer: RowMapping, channel: str) -> str | None:
    value = customer["email"] if channel == Channel.EMAIL else customer["phone"]
    return str(value) if value else None
