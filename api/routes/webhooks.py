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
from dataclasses import dataclass
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
from core.enums import Channel, InteractionType
from db.ledger.outcomes import mark_email_bounced
from db.ledger.reads import MessageRef, resolve_messages
from db.rollups import NewInteraction, insert_interaction, roll_up

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


def _bare(message_id: str) -> str:
    return message_id.strip().strip("<>").strip()


async def _resolve(
    conn: AsyncConnection, events: Sequence[ProviderEvent]
) -> tuple[dict[str, MessageRef], dict[str, MessageRef]]:
    """All messages named by a batch in one query: (by delivery id, by bare provider message id).
    An email's Message-ID may be stored with or without angle brackets: both spellings are asked."""
    ids = [e.delivery_id for e in events if e.delivery_id]
    pmids: list[str] = []
    for e in events:
        if e.provider_message_id:
            bare = _bare(e.provider_message_id)
            pmids += [bare, f"<{bare}>"]
    by_id: dict[str, MessageRef] = {}
    by_pmid: dict[str, MessageRef] = {}
    for message in await resolve_messages(conn, ids, pmids):
        by_id[message.delivery_id] = message
        if message.provider_message_id:
            by_pmid.setdefault(_bare(message.provider_message_id), message)
    return by_id, by_pmid


@dataclass(frozen=True)
class _Outcome:
    """What one provider event records, or None when it records nothing."""

    type: InteractionType
    metadata: dict[str, Any]
    hard_bounce: bool = False


def _email_outcome(e: EmailProviderEvent) -> _Outcome | None:
    meta: dict[str, Any] = {"providerEventId": e.id}
    if e.type == "DELIVERED":
        return _Outcome(InteractionType.DELIVERED, meta)
    if e.bounce_type == "SOFT":
        return None
    meta.update(bounceType=e.bounce_type, reason=e.reason)
    return _Outcome(InteractionType.BOUNCED, meta, hard_bounce=True)


def _sms_outcome(e: SmsProviderEvent) -> _Outcome | None:
    meta: dict[str, Any] = {"providerEventId": e.id}
    if e.type == "DELIVERED":
        return _Outcome(InteractionType.DELIVERED, meta)
    meta.update(errorCode=e.error_code, reason=e.reason)
    return _Outcome(InteractionType.FAILED, meta)


async def _process(
    conn: AsyncConnection, channel: Channel, items: Sequence[tuple[ProviderEvent, _Outcome | None]]
) -> WebhookResult:
    by_id, by_pmid = await _resolve(conn, [e for e, _ in items])
    recorded: list[str] = []
    bounces: dict[str, dict[str, datetime]] = {}  # tenant -> customer -> first bounce of the batch
    duplicates = ignored = 0
    now = datetime.now(UTC)
    for e, outcome in sorted(items, key=lambda item: item[0].id):
        message = by_id.get(e.delivery_id or "") or by_pmid.get(_bare(e.provider_message_id or ""))
        if message is None or message.channel != channel or outcome is None:
            ignored += 1
            continue
        at = e.occurred_at or now
        interaction_id = await insert_interaction(
            conn,
            NewInteraction(
                tenant_id=message.tenant_id,
                campaign_id=message.campaign_id,
                customer_id=message.customer_id,
                channel=message.channel,
                type=outcome.type.value,
                occurred_at=at,
                delivery_id=message.delivery_id,
                metadata={k: v for k, v in outcome.metadata.items() if v is not None},
                event_key=f"webhook:{channel.value.lower()}:{e.id}",
            ),
        )
        if interaction_id is None:
            duplicates += 1
            continue
        recorded.append(interaction_id)
        if outcome.hard_bounce:
            bounces.setdefault(message.tenant_id, {}).setdefault(message.customer_id, at)
    if recorded:
        await roll_up(conn, ids=recorded)
    for tenant_id in sorted(bounces):
        customers = bounces[tenant_id]
        await mark_email_bounced(conn, tenant_id, list(customers), list(customers.values()))
    return WebhookResult(received=len(items), recorded=len(recorded), duplicates=duplicates, ignored=ignored)


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
