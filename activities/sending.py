"""send_batch: one page of recipients, each message claimed in the ledger before the provider call.

Exactly-once as far as the outside world allows (README "Delivery guarantees (the ledger)"):
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DBAPIError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from core import metrics
from core.constants import ERR_CAMPAIGN_INVALID
from core.enums import Channel, InteractionType, Outcome, SkipReason
from core.ids import new_id
from core.messages import Counts, SendBatchInput, SendBatchResult
from db import rollups
from db.audience import CONSENT_COLUMNS
from db.template_versions import run_pins, template_content
from providers.backoff import retry_delay
from providers.email_content import EmailEnvelope, EmailParts, wire_email
from providers.render_pool import EmailSource, RenderProblem
from providers.rendering import recipient_context
from providers.sms import SmsVerdict
from providers.smtp import SmtpVerdict

log = logging.getLogger(__name__)
T = TypeVar("T")

HALT_POLL_SECONDS = 0.1
HEARTBEAT_SECONDS = 1.0
# Provider retries inside a page (providers.backoff: capped exponential, or the SMS provider's
# Retry-After). A message the provider only defers (SMTP 4xx, SMS 429) is tried PROVIDER_TRIES
# times, then its claim is released and the page fails, so Temporal retries the page later with
# the workflow's backoff; from page attempt DEFERRAL_ATTEMPTS on, a message still deferred is
# recorded FAILED, so an address the provider defers for good never blocks the rest.
PROVIDER_TRIES = 6
DEFERRAL_ATTEMPTS = 8
# Attempts of a wave's statements (claim, FAILED rows, answers) when the database connection is
# lost meanwhile: each is idempotent, so it is retried on a fresh connection.
RECORD_ATTEMPTS = 4


async def _on_fresh_connections(what: str, statement: Callable[[], Awaitable[T]]) -> T:
    """Run an idempotent statement, again on a fresh connection if the connection is lost.

    A page's lanes share one fate: if one lane's statement fails, the page fails and its retry
    marks every claimed-but-unanswered message of the other lanes UNKNOWN. A connection cut
    (Postgres restarted, backends terminated) must not do that, so every statement of a wave is
    idempotent and retried here: the claim (a row this claim already wrote is returned again), the
    FAILED rows (inserted once) and the answers (only PENDING rows are marked).
    """
    for attempt in range(RECORD_ATTEMPTS):
        try:
            return await statement()
        except DBAPIError as err:
            if not err.connection_invalidated or attempt == RECORD_ATTEMPTS - 1:
                raise
            log.warning("%s failed on a lost connection, retrying: %s", what, err.orig)
            await asyncio.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


@dataclass(frozen=True)
class Content:
    channels: list[str]
    email: RowMapping | None
    sms: RowMapping | None


@dataclass
class Message:
    customer: RowMapping
    channel: str


@dataclass
class Outgoing:
    """One rendered message with the ledger id it will be claimed under (the idempotency key)."""

    message: Message
    delivery_id: str
    parts: EmailParts | None = None
    body: str | None = None


@dataclass
class Answer:
    """What the provider said; outcome None means nothing left the client (release the claim)."""

    item: Outgoing
    outcome: Outcome | None
    reason: str | None = None
    detail: str | None = None
    itype: InteractionType | None = None
    pmid: str | None = None

    @classmethod
    def sent(cls, item: Outgoing, pmid: str | None) -> "Answer":
        return cls(item, Outcome.SENT, itype=InteractionType.SENT, pmid=pmid)

    @classmethod
    def failed(cls, item: Outgoing, detail: str) -> "Answer":
        reason = SkipReason.PROVIDER_ERROR.value
        return cls(item, Outcome.FAILED, reason=reason, detail=detail, itype=InteractionType.FAILED)

    @classmethod
    def not_sent(cls, item: Outgoing, detail: str) -> "Answer":
        return cls(item, None, detail=detail)

    @classmethod
    def unknown(cls, item: Outgoing, detail: str) -> "Answer":
        """The connection broke mid-transaction: maybe delivered, so never resent by itself."""
        return cls(item, Outcome.UNKNOWN, reason="CONNECTION_LOST", detail=detail)


# What a send needs of a recipient (`c` = customers): the personalisation fields and what
# decides consent (db.audience.CONSENT_COLUMNS); `present` is NULL for a deleted customer.
RECIPIENT_COLUMNS = f"""
    c.first_name, c.last_name, c.club_id, c.external_id, c.attributes, {CONSENT_COLUMNS}
"""
_PAGE = text(
    f"""
    SELECT rr.run_id, rr.customer_id AS id, {RECIPIENT_COLUMNS}
    FROM run_recipients rr
    LEFT JOIN customers c ON c.id = rr.customer_id AND c.tenant_id = :tenant
    WHERE rr.run_id = :run AND (CAST(:after AS text) IS NULL OR rr.customer_id > :after)
      AND (CAST(:upto AS text) IS NULL OR rr.customer_id <= :upto)
    ORDER BY rr.customer_id
    LIMIT :limit
    """
)
# A page may span several runs (a TRIGGERED campaign's page holds one run per event): every
# statement names the page's runs and the customer range, which is exact for a one-run page.
_EXISTING = text(
    "SELECT run_id, customer_id, channel FROM deliveries"
    " WHERE run_id = ANY(:runs) AND customer_id BETWEEN :first AND :last"
)
_ORPHANS = text(
    "UPDATE deliveries SET outcome = 'UNKNOWN', reason = 'CRASHED_IN_FLIGHT', updated_at = now()"
    " WHERE run_id = ANY(:runs) AND customer_id BETWEEN :first AND :last AND outcome = 'PENDING'"
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
_CLAIM_MANY = text(
    """
    INSERT INTO deliveries (id, run_id, campaign_id, tenant_id, customer_id, channel, outcome,
                            address, claimed_at)
    SELECT v.id, v.run, :campaign, :tenant, v.customer, v.channel, 'PENDING', v.address, now()
    FROM unnest(CAST(:ids AS text[]), CAST(:runs AS text[]), CAST(:customers AS text[]),
                CAST(:channels AS text[]), CAST(:addresses AS text[]))
         AS v(id, run, customer, channel, address)
    ON CONFLICT (run_id, customer_id, channel) DO UPDATE SET claimed_at = deliveries.claimed_at
        WHERE deliveries.id = excluded.id AND deliveries.outcome = 'PENDING'
    RETURNING id
    """
)
_RELEASE_MANY = text("DELETE FROM deliveries WHERE id = ANY(:ids) AND outcome = 'PENDING'")
_BOUNCE = text("UPDATE customers SET email_bounced_at = now() WHERE id = ANY(:ids)")
_MARK_MANY = text(
    """
    WITH v AS (
        SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:outcomes AS text[]),
                             CAST(:reasons AS text[]), CAST(:details AS text[]),
                             CAST(:sent_ats AS timestamptz[]), CAST(:pmids AS text[]),
                             CAST(:iids AS text[]), CAST(:itypes AS text[]))
            AS v(id, outcome, reason, detail, sent_at, pmid, iid, itype)
    ), d AS (
        UPDATE deliveries
        SET outcome = v.outcome, reason = v.reason, detail = v.detail, sent_at = v.sent_at,
            provider_message_id = v.pmid, updated_at = now()
        FROM v WHERE deliveries.id = v.id AND deliveries.outcome = 'PENDING'
        RETURNING deliveries.id, deliveries.tenant_id, deliveries.campaign_id,
                  deliveries.customer_id, deliveries.channel, v.iid, v.itype
    )
    INSERT INTO interactions (id, tenant_id, campaign_id, delivery_id, customer_id, channel,
                              type, occurred_at, metadata)
    SELECT d.iid, d.tenant_id, d.campaign_id, d.id, d.customer_id, d.channel, d.itype, :at,
           '{}'::jsonb
    FROM d WHERE d.itype IS NOT NULL
    """
)
_PAGE_COUNTS = text(
    "SELECT outcome, count(*) FROM deliveries"
    " WHERE run_id = ANY(:runs) AND customer_id BETWEEN :first AND :last GROUP BY outcome"
)


def skip_reason(customer: RowMapping, channel: str) -> SkipReason | None:
    """Why a recipient gets nothing on a channel (README "Consent and suppression"), or None when eligible.

    `customer` holds db.audience.CONSENT_COLUMNS. The first reason that applies is the one
    recorded: no address, unsubscribed, hard-bounced (email), on the suppression list, no opt-in.
    """
    if customer["present"] is None:
        return SkipReason.CUSTOMER_DELETED
    if channel == Channel.EMAIL:
        if not customer["email"]:
            return SkipReason.NO_ADDRESS
        if customer["email_unsubscribed_at"] is not None:
            return SkipReason.UNSUBSCRIBED
        if customer["email_bounced_at"] is not None:
            return SkipReason.HARD_BOUNCED
        if customer["email_suppressed"]:
            return SkipReason.SUPPRESSED
        if not customer["email_opt_in"]:
            return SkipReason.NO_CONSENT
        return None
    if not customer["phone"]:
        return SkipReason.NO_ADDRESS
    if customer["sms_unsubscribed_at"] is not None:
        return SkipReason.UNSUBSCRIBED
    if customer["sms_suppressed"]:
        return SkipReason.SUPPRESSED
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
    # What to do with a claim when nothing left the client: a fresh claim is dropped.
    release_sql = _RELEASE_MANY
    # A claim that wrote its rows but lost its answer claims them again (see _CLAIM_MANY).
    claim_is_idempotent = True

    def __init__(self, deps: ActivityDeps, inp: SendBatchInput) -> None:
        self.deps = deps
        self.inp = inp
        self.halted = asyncio.Event()
        self.provider_down: str | None = None
        self.sent = 0

    @property
    def limit(self) -> int:
        return self.inp.limit or self.deps.settings.batch_size

    async def load_rows(self) -> Sequence[RowMapping]:
        """The page: recipients (with `run_id`, `id` = customer id and RECIPIENT_COLUMNS)."""
        async with self.deps.engine.connect() as conn:
            return (
                (
                    await conn.execute(
                        _PAGE,
                        {
                            "tenant": self.inp.tenant_id,
                            "run": self.inp.run_id,
                            "after": self.inp.after,
                            "upto": self.inp.upto,
                            "limit": self.limit,
                        },
                    )
                )
                .mappings()
                .all()
            )

    async def run(self) -> SendBatchResult:
        engine = self.deps.engine
        inp = self.inp
        content = await self._content()
        rows = await self.load_rows()
        if not rows:
            return SendBatchResult(
                page_complete=True,
                exhausted=True,
                next_cursor=inp.after,
                recipients=0,
                counts=Counts(),
                sent_recipients=await self._sent_recipients(),
            )
        customers = [r["id"] for r in rows]
        bounds = {
            "runs": sorted({r["run_id"] for r in rows}),
            "first": min(customers),
            "last": max(customers),
        }
        async with engine.begin() as conn:
            # A dead attempt's in-flight messages: maybe delivered, so never resent (§8).
            await conn.execute(_ORPHANS, bounds)
            existing = {(r[0], r[1], r[2]) for r in await conn.execute(_EXISTING, bounds)}
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
            exhausted=len(rows) < self.limit,
            next_cursor=rows[-1]["id"],
            recipients=len(rows),
            counts=counts,
            sent_recipients=sent_recipients,
        )

    async def _content(self) -> Content:
        """The campaign's channels and the template versions the run pinned (db.template_versions);
        an EMAIL template without `text` gets a text part derived from its html."""
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
            pins = await run_pins(conn, self.inp.campaign_id, self.inp.run_id)
            templates: dict[str, RowMapping | None] = {}
            for channel, template_id in (
                (Channel.EMAIL, campaign["email_template_id"]),
                (Channel.SMS, campaign["sms_template_id"]),
            ):
                templates[channel] = None
                if channel in campaign["channels"]:
                    templates[channel] = await template_content(
                        conn, self.inp.tenant_id, template_id, channel, pins[channel]
                    )
                    if templates[channel] is None:
                        raise ApplicationError(
                            f"the {channel} template of the campaign no longer exists",
                            type=ERR_CAMPAIGN_INVALID,
                            non_retryable=True,
                        )
        return Content(list(campaign["channels"]), templates[Channel.EMAIL], templates[Channel.SMS])

    def _triage(
        self, rows: Sequence[RowMapping], content: Content, existing: set[tuple[str, str, str]]
    ) -> tuple[list[dict[str, Any]], list[Message]]:
        finals: list[dict[str, Any]] = []
        to_send: list[Message] = []
        for row in rows:
            for channel in content.channels:
                if (row["run_id"], row["id"], channel) in existing:
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
            "run": customer["run_id"],
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
        """Send in waves of `send_concurrency`: claim the wave in one statement, send it
        concurrently, record every answer in one statement. `send_lanes` waves run at once, so
        the provider connections stay busy while another wave's claim or record is in the
        database. A crash leaves at most the waves in flight (lanes x wave messages) claimed
        without an answer."""
        wave = self.deps.settings.send_concurrency
        waves = [messages[start : start + wave] for start in range(0, len(messages), wave)]
        pending = iter(waves)

        async def lane() -> None:
            for batch in pending:  # the lanes share one iterator: each wave is taken once
                if self.halted.is_set() or self.provider_down is not None:
                    return
                await self._send_wave(batch, content)

        lanes = min(self.deps.settings.send_lanes, len(waves))
        await asyncio.gather(*(lane() for _ in range(lanes)))

    async def _send_wave(self, batch: list[Message], content: Content) -> None:
        ready, failed = await self._render_wave(batch, content)
        if failed:
            await _on_fresh_connections("recording unrenderable messages", lambda: self._insert_final(failed))
        if self.claim_is_idempotent:
            claimed = await _on_fresh_connections("claiming a wave", lambda: self._claim(ready))
        else:
            claimed = await self._claim(ready)
        answers = await asyncio.gather(*(self._deliver(item) for item in claimed))
        await self._record(list(answers))

    async def _render_wave(
        self, batch: list[Message], content: Content
    ) -> tuple[list["Outgoing"], list[dict[str, Any]]]:
        """The wave rendered in the render pool (one job per channel, not one per message: the
        round trip to a render process is paid once per wave): the messages ready to send, and
        the FAILED ledger rows of those that could not be rendered (reason TEMPLATE_ERROR, or
        TOO_LONG for a text longer than a message may be). A template that fails, hangs or eats
        memory costs this campaign its messages, and nobody else any time."""
        emails = [m for m in batch if m.channel == Channel.EMAIL]
        texts = [m for m in batch if m.channel != Channel.EMAIL]
        email_results, sms_results = await asyncio.gather(
            self._render_emails(emails, content), self._render_texts(texts, content)
        )
        ready: list[Outgoing] = []
        failed: list[dict[str, Any]] = []
        results: list[EmailParts | str | RenderProblem] = [*email_results, *sms_results]
        for message, result in zip([*emails, *texts], results, strict=True):
            if isinstance(result, RenderProblem):
                failed.append(
                    self._row(
                        message.customer,
                        message.channel,
                        Outcome.FAILED,
                        reason=result.reason,
                        detail=str(result)[:500],
                    )
                )
                continue
            item = self._outgoing(message)
            if isinstance(result, EmailParts):
                item.parts = result
            else:
                item.body = result
            ready.append(item)
        return ready, failed

    async def _render_emails(
        self, messages: list[Message], content: Content
    ) -> list[EmailParts | RenderProblem]:
        if not messages:
            return []
        assert content.email is not None
        source = EmailSource(content.email["subject"], content.email["html"], content.email["text"])
        contexts = [recipient_context(dict(m.customer)) for m in messages]
        return await self.deps.render_pool.render_email(self.inp.tenant_id, source, contexts)

    async def _render_texts(self, messages: list[Message], content: Content) -> list[str | RenderProblem]:
        if not messages:
            return []
        assert content.sms is not None
        contexts = [recipient_context(dict(m.customer)) for m in messages]
        return await self.deps.render_pool.render_sms(self.inp.tenant_id, content.sms["body"], contexts)

    def _outgoing(self, message: Message) -> "Outgoing":
        """A rendered message's ledger id: a new one (a resend keeps the row's)."""
        return Outgoing(message=message, delivery_id=new_id("delivery"))

    async def _insert_final(self, rows: list[dict[str, Any]]) -> None:
        async with self.deps.engine.begin() as conn:
            await conn.execute(_INSERT_FINAL, rows)

    async def _claim(self, items: list["Outgoing"]) -> list["Outgoing"]:
        """Claim the wave before any provider call; rows another attempt owns are left alone, and
        a row this claim already wrote (a commit whose answer was lost) is claimed again."""
        if not items:
            return []
        async with self.deps.engine.begin() as conn:
            rows = await conn.execute(
                _CLAIM_MANY,
                {
                    "ids": [i.delivery_id for i in items],
                    "runs": [i.message.customer["run_id"] for i in items],
                    "campaign": self.inp.campaign_id,
                    "tenant": self.inp.tenant_id,
                    "customers": [i.message.customer["id"] for i in items],
                    "channels": [i.message.channel for i in items],
                    "addresses": [_address(i.message.customer, i.message.channel) for i in items],
                },
            )
            won = {r[0] for r in rows}
        return [i for i in items if i.delivery_id in won]

    async def _deliver(self, item: "Outgoing") -> "Answer":
        if item.message.channel == Channel.EMAIL:
            return await self._deliver_email(item)
        return await self._deliver_sms(item)

    async def _deliver_email(self, item: "Outgoing") -> "Answer":
        customer = item.message.customer
        envelope = EmailEnvelope(
            delivery_id=item.delivery_id,
            campaign_id=self.inp.campaign_id,
            tenant_id=self.inp.tenant_id,
            customer_id=customer["id"],
            sender=self.deps.settings.email_from,
            to=customer["email"],
        )
        assert item.parts is not None
        try:
            wire = wire_email(envelope, item.parts, self.deps.settings)
        except ValueError as err:  # e.g. an address that cannot be written in ASCII: nothing sent
            return Answer.failed(item, f"cannot build the message: {err}")
        for attempt in range(PROVIDER_TRIES):
            result = await self.deps.smtp.send(wire.sender, wire.to, wire.data, wire.message_id)
            if result.verdict != SmtpVerdict.TEMPORARY or attempt == PROVIDER_TRIES - 1:
                break
            if not await self._wait_to_retry(retry_delay(attempt)):
                break
        if result.verdict == SmtpVerdict.ACCEPTED:
            return Answer.sent(item, result.message_id)
        if result.verdict == SmtpVerdict.REFUSED:  # 5xx: a bounce, never retried
            return Answer(
                item,
                Outcome.BOUNCED,
                reason=SkipReason.HARD_BOUNCED.value,
                detail=result.detail,
                itype=InteractionType.BOUNCED,
            )
        if result.verdict == SmtpVerdict.INVALID:
            return Answer.failed(item, result.detail)
        if result.verdict == SmtpVerdict.TEMPORARY:
            return self._deferred(item, result.detail)
        if result.verdict == SmtpVerdict.NOT_SENT:
            return Answer.not_sent(item, result.detail)
        return Answer.unknown(item, result.detail)

    async def _deliver_sms(self, item: "Outgoing") -> "Answer":
        assert item.body is not None
        result = await self.deps.sms.send(
            item.message.customer["phone"],
            item.body,
            item.delivery_id,
            attempts=PROVIDER_TRIES,
            wait=self._wait_to_retry,
        )
        if result.verdict == SmsVerdict.ACCEPTED:
            return Answer.sent(item, result.message_id)
        if result.verdict == SmsVerdict.REJECTED:
            return Answer.failed(item, result.detail)
        if result.verdict == SmsVerdict.THROTTLED:
            return self._deferred(item, result.detail)
        if result.verdict == SmsVerdict.NOT_SENT:
            return Answer.not_sent(item, result.detail)
        if result.status is not None:
            # Every attempt with this key got a 5xx: the provider may still have taken it.
            return Answer(item, Outcome.UNKNOWN, reason="PROVIDER_ERROR", detail=result.detail)
        return Answer.unknown(item, result.detail)

    def _deferred(self, item: "Outgoing", detail: str) -> "Answer":
        """A message the provider still defers after PROVIDER_TRIES: nothing was taken, so the
        claim is released for a later page attempt; from DEFERRAL_ATTEMPTS on it is FAILED."""
        attempt = activity.info().attempt if activity.in_activity() else 1
        if attempt >= DEFERRAL_ATTEMPTS:
            return Answer.failed(item, f"still deferred at page attempt {attempt}: {detail}")
        return Answer.not_sent(item, f"deferred: {detail}")

    async def _wait_to_retry(self, seconds: float) -> bool:
        """Sleep before a provider retry; False (stop retrying) as soon as the page is halted."""
        try:
            await asyncio.wait_for(self.halted.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False

    async def _record(self, answers: list["Answer"]) -> None:
        """Mark the wave's answers (and their interactions) in one transaction."""
        marked = [a for a in answers if a.outcome is not None]
        released = [a.item.delivery_id for a in answers if a.outcome is None]
        bounced = [a.item.message.customer["id"] for a in answers if a.outcome == Outcome.BOUNCED]
        now = datetime.now(UTC)
        # The answers are in memory and the messages are out: a connection lost now (Postgres
        # restarted, backends cut) must not turn them into UNKNOWN. Recording is idempotent (only
        # PENDING rows are marked, so a commit whose answer was lost is not applied twice), so
        # it is retried on a fresh connection.
        await _on_fresh_connections(
            "recording a wave", lambda: self._write_answers(marked, released, bounced, now)
        )
        self.sent += sum(1 for a in marked if a.outcome == Outcome.SENT)
        metrics.count_messages(self.inp.tenant_id, [(a.item.message.channel, a.outcome) for a in marked])
        if released:
            self.provider_down = next(a.detail for a in answers if a.outcome is None) or "unreachable"

    async def _write_answers(
        self, marked: list["Answer"], released: list[str], bounced: list[str], now: datetime
    ) -> None:
        async with self.deps.engine.begin() as conn:
            if marked:
                await conn.execute(
                    _MARK_MANY,
                    {
                        "ids": [a.item.delivery_id for a in marked],
                        "outcomes": [a.outcome.value for a in marked if a.outcome],
                        "reasons": [a.reason for a in marked],
                        "details": [(a.detail or "")[:500] or None for a in marked],
                        "sent_ats": [now if a.outcome == Outcome.SENT else None for a in marked],
                        "pmids": [a.pmid for a in marked],
                        "iids": [new_id("interaction") for _ in marked],
                        "itypes": [a.itype.value if a.itype else None for a in marked],
                        "at": now,
                    },
                )
            if released:
                # Nothing left the client: drop the claims so a later attempt sends them (once).
                await conn.execute(self.release_sql, {"ids": released})
            if bounced:
                await conn.execute(_BOUNCE, {"ids": bounced})

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
