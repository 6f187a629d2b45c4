"""What every provider webhook does with the messages it names: find them, record interactions
once, roll up once, and mark hard bounces. Shared by the service's own signed webhook
(api.routes.webhooks) and the providers' formats (api.provider_webhooks).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import InteractionType
from db.ledger.outcomes import mark_email_bounced
from db.ledger.reads import MessageRef, resolve_messages
from db.rollups import NewInteraction, insert_interaction, roll_up


def bare(message_id: str) -> str:
    """A Message-ID without its angle brackets (providers write it either way)."""
    return message_id.strip().strip("<>").strip()


@dataclass(frozen=True)
class Messages:
    """The messages a batch names: by our delivery id, and by bare provider message id."""

    by_id: dict[str, MessageRef]
    by_pmid: dict[str, MessageRef]

    def find(self, delivery_id: str | None, provider_message_id: str | None) -> MessageRef | None:
        return self.by_id.get(delivery_id or "") or self.by_pmid.get(bare(provider_message_id or ""))


async def resolve(conn: AsyncConnection, names: Iterable[tuple[str | None, str | None]]) -> Messages:
    """All messages named by (delivery id, provider message id) pairs, in one query. An email's
    Message-ID may be stored with or without angle brackets: both spellings are asked."""
    ids: list[str] = []
    pmids: list[str] = []
    for delivery_id, provider_message_id in names:
        if delivery_id:
            ids.append(delivery_id)
        if provider_message_id:
            pmids += [bare(provider_message_id), f"<{bare(provider_message_id)}>"]
    messages = Messages({}, {})
    for message in await resolve_messages(conn, ids, pmids):
        messages.by_id[message.delivery_id] = message
        if message.provider_message_id:
            messages.by_pmid.setdefault(bare(message.provider_message_id), message)
    return messages


@dataclass(frozen=True)
class Outcome:
    """What one provider event records about its message."""

    type: InteractionType
    metadata: dict[str, Any]
    hard_bounce: bool = False


@dataclass
class Recorder:
    """Records a batch's interactions; `finish` rolls them up once and marks the hard bounces
    (customers' `email_bounced_at`, so no later campaign emails them)."""

    conn: AsyncConnection
    recorded: list[str] = field(default_factory=list)
    bounces: dict[str, dict[str, datetime]] = field(default_factory=dict)  # tenant -> customer -> at

    async def record(self, message: MessageRef, outcome: Outcome, at: datetime, event_key: str) -> bool:
        """False when the event key was recorded before (a replay)."""
        interaction_id = await insert_interaction(
            self.conn,
            NewInteraction(
                tenant_id=message.tenant_id,
                campaign_id=message.campaign_id,
                customer_id=message.customer_id,
                channel=message.channel,
                type=outcome.type.value,
                occurred_at=at,
                delivery_id=message.delivery_id,
                metadata={k: v for k, v in outcome.metadata.items() if v is not None},
                event_key=event_key,
            ),
        )
        if interaction_id is None:
            return False
        self.recorded.append(interaction_id)
        if outcome.hard_bounce:
            self.bounces.setdefault(message.tenant_id, {}).setdefault(message.customer_id, at)
        return True

    async def finish(self) -> None:
        if self.recorded:
            await roll_up(self.conn, ids=self.recorded)
        for tenant_id in sorted(self.bounces):
            customers = self.bounces[tenant_id]
            await mark_email_bounced(self.conn, tenant_id, list(customers), list(customers.values()))
