"""Gates: the pipeline's policy step, between the source and the renderer.

A gate looks at a batch of messages and says, for each, None (let it through), the reason it is
recorded SKIPPED without a provider call, or a `Hold` (not now: it waits, unrecorded, until the
given instant). Gates run in order and the first verdict wins, so a message skipped or held by one
gate is not shown to the next. Consent is first; the sending policies (activities.send.policy_gates:
quiet hours, then frequency caps, which must stay last because passing a cap counts the message)
follow. A new policy is a new gate, added to `default_gates` or `campaign_gates` and nowhere else
(docs/architecture.md "Adding a gate").
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from activities.send.model import Message
from core.consent import skip_reason
from core.enums import SkipReason

__all__ = ["ConsentGate", "Gate", "Hold", "Screened", "Verdict", "default_gates", "screen", "skip_reason"]


@dataclass(frozen=True)
class Hold:
    """Not now: the message waits until `until` (UTC), then goes through the gates again."""

    until: datetime


Verdict = SkipReason | Hold | None


class Gate(Protocol):
    """One policy: a reason to skip each message, a hold, or None to let it through."""

    name: str

    async def screen(self, messages: Sequence[Message]) -> Sequence[Verdict]: ...


class ConsentGate:
    """Consent and suppression, from the columns the source loaded with each recipient."""

    name = "consent"

    async def screen(self, messages: Sequence[Message]) -> Sequence[Verdict]:
        return [skip_reason(m.customer, m.channel) for m in messages]


def default_gates() -> list[Gate]:
    """The gates every send passes, in order (an operator's resend passes only these: it is an
    explicit action on messages that were already let through once)."""
    return [ConsentGate()]


@dataclass
class Screened:
    admitted: list[Message] = field(default_factory=list)
    skipped: list[tuple[Message, SkipReason]] = field(default_factory=list)
    held: list[tuple[Message, datetime]] = field(default_factory=list)


async def screen(gates: Sequence[Gate], messages: Sequence[Message]) -> Screened:
    """Pass the messages through every gate in order; the first skip or hold wins."""
    result = Screened(admitted=list(messages))
    for gate in gates:
        if not result.admitted:
            break
        verdicts = await gate.screen(result.admitted)
        admitted: list[Message] = []
        for message, verdict in zip(result.admitted, verdicts, strict=True):
            if verdict is None:
                admitted.append(message)
            elif isinstance(verdict, Hold):
                result.held.append((message, verdict.until))
            else:
                result.skipped.append((message, verdict))
        result.admitted = admitted
    return result
