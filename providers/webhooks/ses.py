"""Amazon SES notifications through SNS: the SNS message signature, then the SES event inside.

SNS signs a canonical string of the message's fields ("Name\\nvalue\\n" for each, in a fixed
order: Notification: Message, MessageId, Subject (when present), Timestamp, TopicArn, Type;
SubscriptionConfirmation/UnsubscribeConfirmation: Message, MessageId, SubscribeURL, Timestamp,
Token, TopicArn, Type) with RSA: SHA1withRSA for SignatureVersion 1, SHA256withRSA for 2. The key is
in the X.509 certificate at `SigningCertURL`, which must be https on an `.amazonaws.com` host (any
other URL is refused before anything is fetched). A SubscriptionConfirmation is confirmed by
fetching its `SubscribeURL` (same host rule). The registration's topic ARN must match.

Certificates and confirmations are fetched through a `Fetcher` (an injectable async function from
URL to bytes), so tests use a locally generated certificate.

The SES event (`notificationType`, or `eventType` for configuration-set events) names its message
by the original headers (`mail.headers`: our `X-Delivery-Id` and `Message-ID`) when SES includes
them, else by `mail.commonHeaders.messageId`. One notification may cover several recipients: each
is its own event, `<SNS MessageId>:<n>`.
"""

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from core.enums import Outcome
from providers.webhooks import EventKind, Malformed, MessageEvent, Unverified, iso, json_object, obj, text_of

Fetcher = Callable[[str], Awaitable[bytes]]

_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


def trusted_url(url: Any) -> str:
    """`url` if it is https on an amazonaws.com host; else Unverified."""
    if not isinstance(url, str):
        raise Unverified("SNS URL missing")
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host.endswith(".amazonaws.com") or parts.username or parts.port:
        raise Unverified("SNS URLs must be https on an amazonaws.com host")
    return url


def canonical(message: dict[str, Any]) -> bytes:
    kind = message.get("Type")
    names: tuple[str, ...]
    if kind == "Notification":
        names = _NOTIFICATION_FIELDS
    elif kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        names = _CONFIRMATION_FIELDS
    else:
        raise Unverified("not an SNS message type")
    lines = [f"{n}\n{message[n]}\n" for n in names if isinstance(message.get(n), str)]
    return "".join(lines).encode()


def load(body: bytes) -> dict[str, Any]:
    return json_object(body, "an SNS message")


async def verify(message: dict[str, Any], topic_arn: str, fetch: Fetcher) -> None:
    """The message is signed by SNS for the registered topic; Unverified otherwise."""
    algorithm = _HASHES.get(str(message.get("SignatureVersion")))
    if algorithm is None:
        raise Unverified("unsupported SNS SignatureVersion")
    if message.get("TopicArn") != topic_arn:
        raise Unverified("the message is for another topic")
    data = canonical(message)
    url = trusted_url(message.get("SigningCertURL"))
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        key = x509.load_pem_x509_certificate(await fetch(url)).public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise Unverified("the SNS signing certificate holds no RSA key")
        key.verify(signature, data, padding.PKCS1v15(), algorithm())
    except (InvalidSignature, ValueError, binascii.Error) as err:
        raise Unverified("invalid SNS signature") from err


async def confirm(message: dict[str, Any], fetch: Fetcher) -> None:
    """Confirm a verified SubscriptionConfirmation by fetching its SubscribeURL."""
    await fetch(trusted_url(message.get("SubscribeURL")))


_KINDS: dict[str, tuple[EventKind, Outcome | None]] = {
    "Send": (EventKind.ACCEPTED, Outcome.SENT),
    "Delivery": (EventKind.DELIVERED, Outcome.SENT),
    "Complaint": (EventKind.COMPLAINED, Outcome.SENT),
    "Open": (EventKind.OPENED, Outcome.SENT),
    "Click": (EventKind.CLICKED, Outcome.SENT),
}
_RECIPIENTS = {"Bounce": ("bounce", "bouncedRecipients"), "Complaint": ("complaint", "complainedRecipients")}


def _names(mail: dict[str, Any]) -> tuple[str | None, str | None]:
    """(our delivery id, our Message-ID) from the original headers SES echoes."""
    found: dict[str, str] = {}
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and isinstance(header.get("name"), str):
            found.setdefault(header["name"].lower(), str(header.get("value", "")))
    common = obj(mail.get("commonHeaders"))
    return text_of(found.get("x-delivery-id"), 40), text_of(
        found.get("message-id") or common.get("messageId")
    )


def _recipients(event: dict[str, Any], name: str, mail: dict[str, Any]) -> list[str]:
    if name in _RECIPIENTS:
        section, key = _RECIPIENTS[name]
        listed = obj(event.get(section)).get(key) or []
        return [str(r.get("emailAddress", "")) for r in listed if isinstance(r, dict)]
    if name == "Delivery":
        return [str(r) for r in obj(event.get("delivery")).get("recipients") or []]
    return [str(r) for r in mail.get("destination") or []][:1]


def _kind(event: dict[str, Any], name: str) -> tuple[EventKind, Outcome | None] | None:
    if name == "Bounce":
        if obj(event.get("bounce")).get("bounceType") == "Permanent":
            return EventKind.BOUNCED, Outcome.BOUNCED
        return EventKind.SOFT_BOUNCED, None
    return _KINDS.get(name)


def parse(message: dict[str, Any]) -> list[MessageEvent]:
    """The events of a verified Notification (one per recipient)."""
    try:
        event = json.loads(str(message.get("Message", "")))
    except ValueError as err:
        raise Malformed("the SNS Message is not an SES event") from err
    if not isinstance(event, dict) or not isinstance(event.get("mail"), dict):
        raise Malformed("the SNS Message is not an SES event")
    name = str(event.get("notificationType") or event.get("eventType") or "")
    found = _kind(event, name)
    if found is None:
        return []
    mail = obj(event.get("mail"))
    section = obj(event.get(name.lower()))
    delivery_id, message_id = _names(mail)
    detail = {
        k: section[k]
        for k in ("bounceType", "bounceSubType", "complaintFeedbackType", "link")
        if isinstance(section.get(k), str)
    }
    return [
        MessageEvent(
            event_id=f"{message.get('MessageId')}:{n}",
            kind=found[0],
            occurred_at=iso(section.get("timestamp")) or iso(message.get("Timestamp")),
            delivery_id=delivery_id,
            message_id=message_id,
            address=text_of(address, 320),
            settles=found[1],
            detail=detail,
        )
        for n, address in enumerate(_recipients(event, name, mail))
    ]
