"""SendGrid Event Webhook, signed: an ECDSA (P-256, SHA-256) signature over the timestamp header
followed by the raw body, in `X-Twilio-Email-Event-Webhook-Signature` (base64 DER), with the time in
`X-Twilio-Email-Event-Webhook-Timestamp`. The verification key is the one SendGrid shows when
signing is enabled: a base64 DER (SubjectPublicKeyInfo) public key.

The body is a JSON array of events. Each names its message by `smtp-id` (our Message-ID header) and,
when sent with it as a custom argument, `deliveryId`; `sg_event_id` is the event's id.
"""

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from core.enums import Outcome
from providers.webhooks import EventKind, Malformed, MessageEvent, Unverified, epoch, text_of

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

_KINDS: dict[str, tuple[EventKind, Outcome | None]] = {
    "processed": (EventKind.ACCEPTED, Outcome.SENT),
    "delivered": (EventKind.DELIVERED, Outcome.SENT),
    "deferred": (EventKind.SOFT_BOUNCED, None),
    "spamreport": (EventKind.COMPLAINED, Outcome.SENT),
    "open": (EventKind.OPENED, Outcome.SENT),
    "click": (EventKind.CLICKED, Outcome.SENT),
}


def public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The verification key from SendGrid's base64 DER text; ValueError unless a P-256 key."""
    try:
        key = load_der_public_key(base64.b64decode(value.strip(), validate=True))
    except (ValueError, binascii.Error) as err:
        raise ValueError("publicKey must be the base64 DER public key SendGrid shows") from err
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("publicKey must be an ECDSA P-256 key")
    return key


def verify(key_text: str, signature_b64: str | None, timestamp: str | None, body: bytes) -> None:
    if not signature_b64 or not timestamp:
        raise Unverified(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
    try:
        signature = base64.b64decode(signature_b64.strip(), validate=True)
        public_key(key_text).verify(signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error) as err:
        raise Unverified(f"invalid {SIGNATURE_HEADER}") from err


def _event(raw: dict[str, Any]) -> MessageEvent | None:
    name = str(raw.get("event", ""))
    event_id = text_of(raw.get("sg_event_id"), 200)
    if event_id is None:
        raise Malformed("every SendGrid event has an sg_event_id")
    if name == "bounce":
        # `type` "bounce" is a permanent failure; "blocked" a refusal that may pass later.
        hard = raw.get("type", "bounce") == "bounce"
        kind, settles = (EventKind.BOUNCED, Outcome.BOUNCED) if hard else (EventKind.SOFT_BOUNCED, None)
    elif name in _KINDS:
        kind, settles = _KINDS[name]
    else:
        return None  # dropped, unsubscribe, group_*: nothing of ours to record
    detail = {k: raw[k] for k in ("reason", "status", "url", "type") if isinstance(raw.get(k), str)}
    return MessageEvent(
        event_id=event_id,
        kind=kind,
        occurred_at=epoch(raw.get("timestamp")),
        delivery_id=text_of(raw.get("deliveryId"), 40),
        message_id=text_of(raw.get("smtp-id"), 998),
        address=text_of(raw.get("email"), 320),
        settles=settles,
        detail={k: v[:500] for k, v in detail.items()},
    )


def parse(body: bytes) -> tuple[list[MessageEvent], int]:
    """The events we act on, and how many others the batch held (ignored)."""
    try:
        raw = json.loads(body)
    except ValueError as err:
        raise Malformed("the body is not JSON") from err
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise Malformed("a SendGrid body is a JSON array of event objects")
    events = [e for e in (_event(item) for item in raw) if e is not None]
    return events, len(raw) - len(events)
