"""What flows through the send pipeline: messages, rendered messages and provider answers."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping

from core.enums import Channel, InteractionType, Outcome, SkipReason
from db.ledger.sends import AnswerRow, Claim, FinalRow
from providers.accounts import Sender
from providers.email_content import EmailParts


def address_of(customer: RowMapping, channel: str) -> str | None:
    """The recipient's address on a channel, as the ledger records it."""
    value = customer["email"] if channel == Channel.EMAIL else customer["phone"]
    return str(value) if value else None


@dataclass(frozen=True)
class Content:
    """The campaign's channels and the template versions its run pinned; with an A/B test, each
    variant's templates (a message with a `variant` is rendered from those)."""

    channels: list[str]
    email: Mapping[str, Any] | None
    sms: Mapping[str, Any] | None
    variants: dict[str, dict[Channel, Mapping[str, Any] | None]] = field(default_factory=dict)
    # Who the page sends as, and through which accounts (activities.send.identity); None: the
    # platform's From, sender and accounts.
    sender: Sender | None = None

    def template(self, channel: str, variant: str | None) -> Mapping[str, Any] | None:
        if variant is not None and variant in self.variants:
            return self.variants[variant][Channel(channel)]
        return self.email if channel == Channel.EMAIL else self.sms


@dataclass(frozen=True)
class Message:
    """One recipient on one channel. `customer` holds `run_id`, `id` and db.audience.RECIPIENT_COLUMNS.

    `delivery_id` names the ledger row the message is sent under when that row exists already
    (a resend of an UNKNOWN row, an in-flight SMS posted again with its key); None: a new row."""

    customer: RowMapping
    channel: str
    delivery_id: str | None = None
    # The A/B variant it is sent with (core.experiments); None without a test.
    variant: str | None = None

    @property
    def run_id(self) -> str:
        return str(self.customer["run_id"])

    @property
    def customer_id(self) -> str:
        return str(self.customer["id"])

    @property
    def address(self) -> str | None:
        return address_of(self.customer, self.channel)

    def final(
        self, delivery_id: str, outcome: Outcome, reason: str | None, detail: str | None = None
    ) -> FinalRow:
        """The ledger row of this message decided without a provider call."""
        return FinalRow(
            id=delivery_id,
            run_id=self.run_id,
            customer_id=self.customer_id,
            channel=self.channel,
            outcome=outcome.value,
            reason=reason,
            detail=detail,
            address=self.address,
        )


@dataclass(frozen=True)
class Outgoing:
    """A rendered message with the ledger id it is claimed and sent under (the idempotency key):
    an email's parts, or an SMS body."""

    message: Message
    delivery_id: str
    parts: EmailParts | None = None
    body: str | None = None

    def claim(self) -> Claim:
        m = self.message
        return Claim(self.delivery_id, m.run_id, m.customer_id, m.channel, m.address, m.variant)


@dataclass(frozen=True)
class Answer:
    """What the provider said; outcome None means nothing left the client (release the claim)."""

    item: Outgoing
    outcome: Outcome | None
    reason: str | None = None
    detail: str | None = None
    itype: InteractionType | None = None
    pmid: str | None = None
    # Not sent because the provider defers this message (SMTP 4xx, SMS 429): the rest of the page
    # goes on, and the page fails at its end so a later attempt asks again.
    deferred: bool = False

    @classmethod
    def sent(cls, item: Outgoing, pmid: str | None) -> "Answer":
        return cls(item, Outcome.SENT, itype=InteractionType.SENT, pmid=pmid)

    @classmethod
    def failed(cls, item: Outgoing, detail: str) -> "Answer":
        reason = SkipReason.PROVIDER_ERROR.value
        return cls(item, Outcome.FAILED, reason=reason, detail=detail, itype=InteractionType.FAILED)

    @classmethod
    def bounced(cls, item: Outgoing, detail: str) -> "Answer":
        reason = SkipReason.HARD_BOUNCED.value
        return cls(item, Outcome.BOUNCED, reason=reason, detail=detail, itype=InteractionType.BOUNCED)

    @classmethod
    def not_sent(cls, item: Outgoing, detail: str, *, deferred: bool = False) -> "Answer":
        return cls(item, None, detail=detail, deferred=deferred)

    @classmethod
    def unknown(cls, item: Outgoing, detail: str, reason: str = "CONNECTION_LOST") -> "Answer":
        """The provider may have the message (a break mid-transfer): never resent by itself."""
        return cls(item, Outcome.UNKNOWN, reason=reason, detail=detail)

    def row(self, interaction_id: str | None, at: datetime) -> AnswerRow:
        """The ledger's view of this answer; an answer without an outcome is a release instead."""
        if self.outcome is None:
            raise ValueError("a released claim has no answer row")
        return AnswerRow(
            id=self.item.delivery_id,
            outcome=self.outcome.value,
            reason=self.reason,
            detail=(self.detail or "")[:500] or None,
            sent_at=at if self.outcome == Outcome.SENT else None,
            provider_message_id=self.pmid,
            interaction_id=interaction_id,
            interaction_type=self.itype.value if self.itype else None,
        )

    @property
    def logs_interaction(self) -> bool:
        """Whether recording it writes an interaction row: a SENT is its ledger row and writes
        none (db.ledger.sends, "Counting sends")."""
        return self.itype is not None and self.itype != InteractionType.SENT
