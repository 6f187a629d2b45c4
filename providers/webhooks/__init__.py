"""Provider webhooks in the providers' own formats (README "Provider webhooks"): each module checks
one provider's real signature scheme and reads its documented payloads into `MessageEvent`s (and,
for Twilio, `InboundSms`). Nothing here touches the database: api.provider_webhooks acts on what
these modules return.

A request that fails its provider's check raises `Unverified` (a 401, nothing recorded); a
verified body that is not the provider's format raises `Malformed` (a 400).
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from core.enums import Outcome

PROVIDERS = ("twilio", "sendgrid", "mailgun", "postmark", "ses")


class Unverified(Exception):
    """The request is not provably from the provider (missing, stale or wrong signature)."""


class Malformed(Exception):
    """A verified request whose body is not the provider's documented format."""


class EventKind(StrEnum):
    """What a provider said about one message, in the service's terms."""

    ACCEPTED = "ACCEPTED"  # the provider has the message (SendGrid processed, Twilio sent, ...)
    DELIVERED = "DELIVERED"
    BOUNCED = "BOUNCED"  # permanent: the mailbox does not exist
    SOFT_BOUNCED = "SOFT_BOUNCED"  # temporary: recorded as evidence, nothing suppressed
    COMPLAINED = "COMPLAINED"  # reported as spam
    OPENED = "OPENED"
    CLICKED = "CLICKED"
    FAILED = "FAILED"  # an SMS the carrier did not deliver


@dataclass(frozen=True)
class MessageEvent:
    """One provider event about one recipient of one message.

    `delivery_id` (ours, when the provider echoes it) or `message_id` (our email Message-ID, or the
    SMS provider's message sid) names the message; `address` is the recipient as the provider
    wrote it. `settles` is the outcome this evidence gives an UNKNOWN delivery (None: none), and
    `permanent` marks an SMS failure that means the number can never receive (it is suppressed).
    """

    event_id: str
    kind: EventKind
    occurred_at: datetime | None = None
    delivery_id: str | None = None
    message_id: str | None = None
    address: str | None = None
    settles: Outcome | None = None
    permanent: bool = False
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_id", bounded_id(self.event_id))


@dataclass(frozen=True)
class InboundSms:
    """A text message a recipient sent to one of the tenant's numbers."""

    event_id: str
    sender: str
    to: str
    body: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_id", bounded_id(self.event_id))


MAX_EVENT_ID = 200


def bounded_id(event_id: str) -> str:
    """An event id short enough for every key it is stored in (interactions' event keys are at most
    300 characters with their prefix): a longer one is replaced by its SHA-256, still unique."""
    if len(event_id) <= MAX_EVENT_ID:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode("utf-8", errors="replace")).hexdigest()


def epoch(value: Any) -> datetime | None:
    """A Unix timestamp (seconds, int/float/str) as an aware UTC time; None when it is not one."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if not 0 < seconds < 32503680000:  # year 3000
        return None
    return datetime.fromtimestamp(seconds, UTC)


def iso(value: Any) -> datetime | None:
    """An ISO 8601 time (`Z` allowed) as an aware time (naive: UTC); None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def text_of(value: Any, limit: int = 500) -> str | None:
    """A string field of a payload, bounded; None when absent or not a string."""
    return value[:limit] if isinstance(value, str) and value else None


def obj(value: Any) -> dict[str, Any]:
    """A JSON object field of a payload; {} when absent or not an object."""
    return value if isinstance(value, dict) else {}


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """A body that must be one JSON object before its signature can be checked; anything else is
    `Unverified` ("the body is not {what}")."""
    try:
        raw = json.loads(body)
    except ValueError as err:
        raise Unverified(f"the body is not {what}") from err
    if not isinstance(raw, dict):
        raise Unverified(f"the body is not {what}")
    return raw
