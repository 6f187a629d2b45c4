"""Mailgun webhooks: a JSON body with a `signature` object (`timestamp`, `token`, `signature`) and
the event in `event-data`. The signature is hex(HMAC-SHA256(webhook signing key, timestamp +
token)); a timestamp more than `MAX_AGE` seconds from now is refused, so a captured request cannot
be replayed later (a replay inside the window is harmless: events are idempotent on their id).

The event names its message by `message.headers.message-id` (our Message-ID, without brackets)
and, when the message carried it as a variable, `user-variables.deliveryId`.
"""

import hashlib
import hmac
import time
from typing import Any

from core.enums import Outcome
from providers.webhooks import (
    EventKind,
    Malformed,
    MessageEvent,
    Unverified,
    epoch,
    json_object,
    obj,
    text_of,
)

MAX_AGE = 15 * 60

_KINDS: dict[str, tuple[EventKind, Outcome | None]] = {
    "accepted": (EventKind.ACCEPTED, Outcome.SENT),
    "delivered": (EventKind.DELIVERED, Outcome.SENT),
    "complained": (EventKind.COMPLAINED, Outcome.SENT),
    "opened": (EventKind.OPENED, Outcome.SENT),
    "clicked": (EventKind.CLICKED, Outcome.SENT),
}


def signature(signing_key: str, timestamp: str, token: str) -> str:
    return hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def load(body: bytes) -> dict[str, Any]:
    return json_object(body, "a signed Mailgun webhook")


def verify(signing_key: str, payload: dict[str, Any], now: float | None = None) -> None:
    sig = payload.get("signature")
    if not isinstance(sig, dict):
        raise Unverified("missing Mailgun signature")
    timestamp, token, given = (str(sig.get(k, "")) for k in ("timestamp", "token", "signature"))
    at = epoch(timestamp)
    if at is None or not token or abs((now or time.time()) - at.timestamp()) > MAX_AGE:
        raise Unverified("missing or stale Mailgun signature timestamp")
    if not hmac.compare_digest(given.encode(), signature(signing_key, timestamp, token).encode()):
        raise Unverified("invalid Mailgun signature")


def _kind(data: dict[str, Any]) -> tuple[EventKind, Outcome | None] | None:
    name = data.get("event")
    if name == "failed":
        if data.get("severity") == "permanent":
            return EventKind.BOUNCED, Outcome.BOUNCED
        return EventKind.SOFT_BOUNCED, None
    return _KINDS.get(str(name))


def parse(payload: dict[str, Any]) -> MessageEvent | None:
    data = payload.get("event-data")
    if not isinstance(data, dict):
        raise Malformed("a Mailgun webhook carries `event-data`")
    event_id = text_of(data.get("id"), 200)
    if event_id is None:
        raise Malformed("Mailgun event-data has an id")
    found = _kind(data)
    if found is None:
        return None
    message = obj(data.get("message"))
    headers = obj(message.get("headers"))
    variables = obj(data.get("user-variables"))
    status = obj(data.get("delivery-status"))
    detail = {"severity": data.get("severity"), "reason": data.get("reason"), "url": data.get("url")}
    detail["description"] = status.get("description") or status.get("message")
    return MessageEvent(
        event_id=event_id,
        kind=found[0],
        occurred_at=epoch(data.get("timestamp")),
        delivery_id=text_of(variables.get("deliveryId"), 40),
        message_id=text_of(headers.get("message-id"), 998),
        address=text_of(data.get("recipient"), 320),
        settles=found[1],
        detail={k: v[:500] for k, v in detail.items() if isinstance(v, str) and v},
    )
