"""Provider webhooks: email DELIVERED/BOUNCED and SMS delivery receipts (DELIVERED/FAILED).

Authentication: `X-Campaigns-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw request body
keyed with `CAMPAIGNS_WEBHOOK_SECRET` (the GitHub/Stripe style). The secret never travels, and a
body altered in transit fails; a missing or wrong signature is a 401 and records nothing. Replays
are harmless because each event is idempotent on the provider's event id (`interactions.event_key`
= `webhook:<channel>:<id>`).

Body: `{"events": [...]}` (1 to 1,000 events), each naming its message by `deliveryId` (ours,
also in the email's `X-Delivery-Id` header) or `providerMessageId` (the email's Message-ID, with or
without angle brackets; the SMS provider's sid). One query resolves every message of the batch;
interactions are inserted in event-id order (no deadlock between overlapping batches) and rolled
up once. The answer is 200 with counts even for events naming unknown messages (a provider would
otherwise retry them forever). Likewise each event is validated on its own: an invalid one is
listed in `rejected` (index, path, message) and the valid ones are recorded; only a batch with no
valid event at all is a 422.

- email DELIVERED: records DELIVERED.
- email BOUNCED, `bounceType` HARD (the default): records BOUNCED and sets the customer's
  `email_bounced_at`, so no later campaign emails them. SOFT: a deferral; nothing is recorded.
- SMS DELIVERED / FAILED: records DELIVERED / FAILED. The ledger (`deliveries.outcome`) keeps what
  our send did (SENT); what happened afterwards lives in the interactions.
"""

import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from api.deps import SettingsDep, StateDep
from api.errors import Problem, all_rejected
from api.schemas.common import BatchItemProblem, sort_batch
from api.schemas.events import (
    EmailProviderEvent,
    EmailWebhook,
    ProviderEvent,
    SmsProviderEvent,
    SmsWebhook,
    WebhookResult,
)
from api.webhook_ledger import Outcome, Recorder, resolve
from core.enums import Channel, InteractionType

SIGNATURE_HEADER = "X-Campaigns-Signature"


def signature(secret: str, body: bytes) -> str:
    """The header value a provider sends for `body` (also used by tests and the dev tools)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


async def require_signature(request: Request, settings: SettingsDep) -> None:
    given = request.headers.get(SIGNATURE_HEADER, "").strip().encode("latin-1")
    expected = signature(settings.webhook_secret, await request.body()).encode("ascii")
    if not hmac.compare_digest(given.lower(), expected):
        raise Problem(401, f"missing or invalid {SIGNATURE_HEADER}")


router = APIRouter(prefix="/webhooks", tags=["webhooks"], dependencies=[Depends(require_signature)])


def _email_outcome(e: EmailProviderEvent) -> Outcome | None:
    meta: dict[str, Any] = {"providerEventId": e.id}
    if e.type == "DELIVERED":
        return Outcome(InteractionType.DELIVERED, meta)
    if e.bounce_type == "SOFT":
        return None
    meta.update(bounceType=e.bounce_type, reason=e.reason)
    return Outcome(InteractionType.BOUNCED, meta, hard_bounce=True)


def _sms_outcome(e: SmsProviderEvent) -> Outcome | None:
    meta: dict[str, Any] = {"providerEventId": e.id}
    if e.type == "DELIVERED":
        return Outcome(InteractionType.DELIVERED, meta)
    meta.update(errorCode=e.error_code, reason=e.reason)
    return Outcome(InteractionType.FAILED, meta)


async def _process(
    conn: AsyncConnection, channel: Channel, items: Sequence[tuple[ProviderEvent, Outcome | None]]
) -> WebhookResult:
    messages = await resolve(conn, [(e.delivery_id, e.provider_message_id) for e, _ in items])
    recorder = Recorder(conn)
    duplicates = ignored = 0
    now = datetime.now(UTC)
    for e, outcome in sorted(items, key=lambda item: item[0].id):
        message = messages.find(e.delivery_id, e.provider_message_id)
        if message is None or message.channel != channel or outcome is None:
            ignored += 1
            continue
        key = f"webhook:{channel.value.lower()}:{e.id}"
        if not await recorder.record(message, outcome, e.occurred_at or now, key):
            duplicates += 1
    await recorder.finish()
    recorded = len(recorder.recorded)
    return WebhookResult(received=len(items), recorded=recorded, duplicates=duplicates, ignored=ignored)


def _with_rejected(result: WebhookResult, problems: list[dict[str, Any]], total: int) -> WebhookResult:
    """The counts of the valid events, plus the problems of the others (each event on its own)."""
    return result.model_copy(
        update={"received": total, "rejected": [BatchItemProblem(**p) for p in problems] or None}
    )


@router.post(
    "/email", response_model=WebhookResult, response_model_by_alias=True, response_model_exclude_none=True
)
async def email_webhook(body: EmailWebhook, state: StateDep) -> WebhookResult:
    """200 when at least one event is valid (the others are listed in `rejected`); 422 when none is."""
    batch = sort_batch(body.events, "events")
    if not batch.valid:
        raise all_rejected(batch.problems)
    async with state.engine.begin() as conn:
        result = await _process(conn, Channel.EMAIL, [(e, _email_outcome(e)) for e in batch.valid])
    return _with_rejected(result, batch.problems, len(body.events))


@router.post(
    "/sms", response_model=WebhookResult, response_model_by_alias=True, response_model_exclude_none=True
)
async def sms_webhook(body: SmsWebhook, state: StateDep) -> WebhookResult:
    """200 when at least one event is valid (the others are listed in `rejected`); 422 when none is."""
    batch = sort_batch(body.events, "events")
    if not batch.valid:
        raise all_rejected(batch.problems)
    async with state.engine.begin() as conn:
        result = await _process(conn, Channel.SMS, [(e, _sms_outcome(e)) for e in batch.valid])
    return _with_rejected(result, batch.problems, len(body.events))
