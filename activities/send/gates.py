"""Gates: the pipeline's policy step, between the source and the renderer.

A gate looks at a batch of messages and says, for each, None (let it through) or the reason it is
recorded SKIPPED without a provider call. Gates run in order and the first reason wins, so a
message skipped by one gate is not shown to the next. The consent gate is the only one today;
rate limits, quiet hours, frequency caps and experiment variants are gates too (a gate may be
async and read the database), added to `default_gates` and nowhere else
(docs/architecture.md "Adding a gate").
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.engine import RowMapping

from activities.send.model import Message
from core.enums import Channel, SkipReason


class Gate(Protocol):
    """One policy: a reason to skip each message, or None to let it through."""

    name: str

    async def screen(self, messages: Sequence[Message]) -> Sequence[SkipReason | None]: ...


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


class ConsentGate:
    """Consent and suppression, from the columns the source loaded with each recipient."""

    name = "consent"

    async def screen(self, messages: Sequence[Message]) -> Sequence[SkipReason | None]:
        return [skip_reason(m.customer, m.channel) for m in messages]


def default_gates() -> list[Gate]:
    """The gates every send passes, in order."""
    return [ConsentGate()]


@dataclass
class Screened:
    admitted: list[Message] = field(default_factory=list)
    skipped: list[tuple[Message, SkipReason]] = field(default_factory=list)


async def screen(gates: Sequence[Gate], messages: Sequence[Message]) -> Screened:
    """Pass the messages through every gate in order; the first reason to skip wins."""
    result = Screened(admitted=list(messages))
    for gate in gates:
        if not result.admitted:
            break
        reasons = await gate.screen(result.admitted)
        admitted: list[Message] = []
        for message, reason in zip(result.admitted, reasons, strict=True):
            if reason is None:
                admitted.append(message)
            else:
                result.skipped.append((message, reason))
        result.admitted = admitted
    return result
