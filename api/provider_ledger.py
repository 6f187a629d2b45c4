"""What a verified provider event does (README "Provider webhooks"), for the tenant that registered
the webhook only: a message of another tenant is never touched, and suppressions go on the
registering tenant's list.

- Each event is claimed once on (provider, event id) (db.provider_events): a replay changes nothing.
- DELIVERED, BOUNCED (hard), FAILED (SMS), OPENED, CLICKED record the interaction of that type;
  opens and clicks are marked `providerReported`. A hard bounce also marks the customer bounced.
- A hard bounce lists the address (reason HARD_BOUNCED), a complaint (COMPLAINED), a permanent
  SMS failure the number (SUPPRESSED); later sends skip it with that reason.
- Every event about a message of ours is kept as evidence (db.ledger.evidence); one that proves
  the message left settles an UNKNOWN delivery (SENT, or BOUNCED for a hard bounce, FAILED for an
  SMS the provider never sent), and a settled SENT/BOUNCED also counts as sent in the stats.
- Inbound SMS: STOP words list the number for SMS (reason UNSUBSCRIBED), START words take that
  entry off, HELP words answer with the tenant's help text.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from api.schemas.provider_webhooks import ProviderWebhookResult
from api.webhook_ledger import Outcome as Recorded
from api.webhook_ledger import Recorder, resolve
from core.addresses import canonical_email, canonical_phone
from core.enums import Channel, InteractionType, Outcome, SkipReason
from db.ledger.evidence import Evidence, add_evidence, settle_unknown
from db.ledger.reads import MessageRef
from db.provider_events import claim_event
from db.provider_webhooks import ProviderWebhookRow
from db.suppressions import suppress_with_reason, unsuppress_reason
from db.tenant_settings import workspace_settings
from providers.webhooks import EventKind, InboundSms, MessageEvent
from providers.webhooks.twilio import keyword, twiml_message

_INTERACTIONS = {
    EventKind.DELIVERED: InteractionType.DELIVERED,
    EventKind.BOUNCED: InteractionType.BOUNCED,
    EventKind.FAILED: InteractionType.FAILED,
    EventKind.OPENED: InteractionType.OPENED,
    EventKind.CLICKED: InteractionType.CLICKED,
}
_LISTED = {EventKind.COMPLAINED: SkipReason.COMPLAINED, EventKind.BOUNCED: SkipReason.HARD_BOUNCED}
_SETTLE_REASONS = {
    Outcome.BOUNCED: SkipReason.HARD_BOUNCED.value,
    Outcome.FAILED: SkipReason.PROVIDER_ERROR.value,
}


_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def _number(value: str) -> str | None:
    """A provider's phone number in the stored form (core.addresses); a number the library thinks
    impossible is kept as the provider wrote it when it is E.164 (the provider did reach it)."""
    try:
        return canonical_phone(value)
    except ValueError:
        return value.strip() if _E164.fullmatch(value.strip()) else None


def _mailbox(value: str) -> str | None:
    try:
        return canonical_email(value)
    except ValueError:
        return None


@dataclass
class _Batch:
    """One request's events as they are acted on."""

    conn: AsyncConnection
    hook: ProviderWebhookRow
    recorder: Recorder

    @property
    def channel(self) -> Channel:
        return Channel.SMS if self.hook.provider == "twilio" else Channel.EMAIL

    def ours(self, message: MessageRef | None) -> MessageRef | None:
        """The message only if it is the registering tenant's, on the provider's channel."""
        if message is None or message.tenant_id != self.hook.tenant_id or message.channel != self.channel:
            return None
        return message

    async def suppress(self, e: MessageEvent) -> bool:
        """List the event's address when the event says it must never be sent to again."""
        reason = _LISTED.get(e.kind) or (SkipReason.SUPPRESSED if e.permanent else None)
        if reason is None or e.address is None:
            return False
        try:
            address = (
                canonical_phone(e.address) if self.channel == Channel.SMS else canonical_email(e.address)
            )
        except ValueError:
            return False
        code = e.detail.get("errorCode")
        await suppress_with_reason(
            self.conn,
            tenant_id=self.hook.tenant_id,
            channel=self.channel,
            address=address,
            reason=reason.value,
            note=f"{self.hook.provider} {e.kind.value.lower()}" + (f" (error {code})" if code else ""),
            by=f"provider:{self.hook.provider}",
        )
        return True

    async def on_message(self, e: MessageEvent, message: MessageRef, at: datetime) -> None:
        """Record the interaction and the evidence; settle the delivery when it is UNKNOWN."""
        provider = self.hook.provider
        kind = _INTERACTIONS.get(e.kind)
        if kind is not None:
            meta: dict[str, object] = {"provider": provider, "providerEventId": e.event_id, **e.detail}
            if e.kind in (EventKind.OPENED, EventKind.CLICKED):
                meta["providerReported"] = True
            outcome = Recorded(kind, meta, hard_bounce=e.kind == EventKind.BOUNCED)
            await self.recorder.record(message, outcome, at, f"provider:{provider}:{e.event_id}")
        evidence = Evidence(message.delivery_id, provider, e.event_id, e.kind.value, at, e.detail)
        if e.settles is None:
            await add_evidence(self.conn, evidence)
            return
        settled = await settle_unknown(self.conn, evidence, e.settles, _SETTLE_REASONS.get(e.settles))
        if settled and e.settles != Outcome.FAILED:
            # The message left after all: it counts as sent, at the provider's time.
            sent = Recorded(InteractionType.SENT, {"settledBy": provider, "providerEventId": e.event_id})
            await self.recorder.record(message, sent, at, f"settled:{message.delivery_id}")


async def apply_events(
    conn: AsyncConnection, hook: ProviderWebhookRow, events: list[MessageEvent], skipped: int
) -> ProviderWebhookResult:
    """Act on a verified request's events, each once; counts for the answer (`skipped`: events of
    the request of a kind nothing is done for, counted as ignored)."""
    messages = await resolve(conn, [(e.delivery_id, e.message_id) for e in events])
    batch = _Batch(conn, hook, Recorder(conn))
    recorded = duplicates = 0
    ignored = skipped
    now = datetime.now(UTC)
    for e in sorted(events, key=lambda e: e.event_id):
        if not await claim_event(conn, hook.provider, e.event_id, hook.id):
            duplicates += 1
            continue
        listed = await batch.suppress(e)
        message = batch.ours(messages.find(e.delivery_id, e.message_id))
        if message is not None:
            await batch.on_message(e, message, e.occurred_at or now)
        if message is None and not listed:
            ignored += 1
        else:
            recorded += 1
    await batch.recorder.finish()
    received = len(events) + skipped
    return ProviderWebhookResult(received=received, recorded=recorded, duplicates=duplicates, ignored=ignored)


async def apply_inbound(conn: AsyncConnection, hook: ProviderWebhookRow, sms: InboundSms) -> str:
    """Act on an inbound SMS keyword; the TwiML answer (a reply only for HELP)."""
    word = keyword(sms.body)
    number = _number(sms.sender)
    if number is None:
        return twiml_message(None)
    if word == "HELP":
        return twiml_message((await workspace_settings(conn, hook.tenant_id)).sms_help_text)
    if word is None or not await claim_event(conn, hook.provider, sms.event_id, hook.id):
        return twiml_message(None)
    reason = SkipReason.UNSUBSCRIBED.value
    if word == "STOP":
        await suppress_with_reason(
            conn,
            tenant_id=hook.tenant_id,
            channel=Channel.SMS,
            address=number,
            reason=reason,
            note=f"replied {sms.body.strip()[:20]!r}",
            by="provider:twilio",
        )
    else:
        await unsuppress_reason(
            conn, tenant_id=hook.tenant_id, channel=Channel.SMS, address=number, reason=reason
        )
    return twiml_message(None)
