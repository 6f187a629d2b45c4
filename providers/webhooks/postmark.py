"""Postmark webhooks. Postmark signs nothing: the webhook URL carries HTTP Basic credentials
(`https://user:pass@host/...`), which Postmark sends as `Authorization: Basic ...`; they are
compared in constant time with the registered ones.

The body is one JSON record; `RecordType` says which (Delivery, Bounce, SpamComplaint, Open,
Click). Postmark's `MessageID` is its own id, not our Message-ID: the message is named by the
`deliveryId` metadata (sent as the `X-PM-Metadata-deliveryId` header). Bounces and complaints
carry their own `ID`; the other records are identified by message, recipient and time.
"""

import base64
import binascii
import hmac
import json
from typing import Any

from core.enums import Outcome
from providers.webhooks import EventKind, Malformed, MessageEvent, Unverified, iso, obj, text_of

# Bounce types that mean the address will never accept mail (Postmark's bounce type list).
HARD_BOUNCES = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "DMARCPolicy"})

_KINDS: dict[str, tuple[EventKind, Outcome | None, str]] = {
    "Delivery": (EventKind.DELIVERED, Outcome.SENT, "DeliveredAt"),
    "SpamComplaint": (EventKind.COMPLAINED, Outcome.SENT, "BouncedAt"),
    "Open": (EventKind.OPENED, Outcome.SENT, "ReceivedAt"),
    "Click": (EventKind.CLICKED, Outcome.SENT, "ReceivedAt"),
}


def basic_auth(username: str, password: str) -> str:
    """The Authorization header Postmark sends for credentials on the webhook URL."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def verify(username: str, password: str, authorization: str | None) -> None:
    scheme, _, value = (authorization or "").partition(" ")
    try:
        given = base64.b64decode(value.strip(), validate=True) if scheme.lower() == "basic" else b""
    except (ValueError, binascii.Error):
        given = b""
    expected = f"{username}:{password}".encode()
    if not hmac.compare_digest(given, expected):
        raise Unverified("missing or wrong Basic credentials")


def _kind(raw: dict[str, Any]) -> tuple[EventKind, Outcome | None, str] | None:
    record = raw.get("RecordType")
    if record == "Bounce":
        if raw.get("Type") in HARD_BOUNCES:
            return EventKind.BOUNCED, Outcome.BOUNCED, "BouncedAt"
        return EventKind.SOFT_BOUNCED, None, "BouncedAt"
    return _KINDS.get(str(record))


def _event_id(raw: dict[str, Any], at: str) -> str:
    if raw.get("RecordType") in ("Bounce", "SpamComplaint") and raw.get("ID") is not None:
        return f"{raw.get('RecordType')}:{raw['ID']}"
    parts = (raw.get("MessageID"), raw.get("Recipient") or raw.get("Email"), at, raw.get("OriginalLink"))
    return ":".join([str(raw.get("RecordType")), *(str(p) for p in parts if p)])


def parse(body: bytes) -> MessageEvent | None:
    try:
        raw = json.loads(body)
    except ValueError as err:
        raise Malformed("the body is not JSON") from err
    if not isinstance(raw, dict) or not isinstance(raw.get("RecordType"), str):
        raise Malformed("a Postmark webhook is one JSON record with a RecordType")
    found = _kind(raw)
    if found is None:
        return None
    kind, settles, time_field = found
    metadata = obj(raw.get("Metadata"))
    detail = {"type": raw.get("Type"), "description": raw.get("Description"), "url": raw.get("OriginalLink")}
    return MessageEvent(
        event_id=_event_id(raw, str(raw.get(time_field, ""))),
        kind=kind,
        occurred_at=iso(raw.get(time_field)),
        delivery_id=text_of(metadata.get("deliveryId"), 40),
        message_id=None,
        address=text_of(raw.get("Email") or raw.get("Recipient"), 320),
        settles=settles,
        detail={k: v[:500] for k, v in detail.items() if isinstance(v, str) and v},
    )
