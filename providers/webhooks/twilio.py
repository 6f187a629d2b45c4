"""Twilio: status callbacks and inbound SMS, both form posts signed with `X-Twilio-Signature`.

The signature is base64(HMAC-SHA1(auth token, URL + each POST parameter's name and value
concatenated, in parameter-name order)), where the URL is the exact one configured in Twilio,
query string included: so a `deliveryId` we put on the status callback URL is signed too.

A status callback names the message by `MessageSid` and, when we set it, by the `deliveryId` query
parameter (the only name an UNKNOWN send has: its sid never reached us). Its event id is
`<MessageSid>:<MessageStatus>` (Twilio calls back once per status). An inbound message has `Body`
and no `MessageStatus`; its id is its `MessageSid`.
"""

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence

from core.enums import Outcome
from providers.webhooks import EventKind, InboundSms, Malformed, MessageEvent, Unverified, text_of

SIGNATURE_HEADER = "X-Twilio-Signature"

# Error codes of a failed/undelivered message that mean the number will never receive an SMS
# (Twilio's error dictionary): unreachable handset or carrier, unknown number, landline or
# unreachable carrier, not a mobile number, invalid 'To' number, the recipient opted out.
PERMANENT_ERRORS = frozenset({"30003", "30005", "30006", "21211", "21614", "21610"})

_STATUS: dict[str, tuple[EventKind, Outcome]] = {
    "sent": (EventKind.ACCEPTED, Outcome.SENT),
    "delivered": (EventKind.DELIVERED, Outcome.SENT),
    "undelivered": (EventKind.FAILED, Outcome.SENT),  # it left us; the carrier did not deliver it
    "failed": (EventKind.FAILED, Outcome.FAILED),  # Twilio could not send it at all
}


def signature(auth_token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """The `X-Twilio-Signature` Twilio sends for a POST of `params` to `url`."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify(auth_token: str, url: str, params: Sequence[tuple[str, str]], given: str | None) -> None:
    expected = signature(auth_token, url, params).encode()
    if not given or not hmac.compare_digest(given.strip().encode(), expected):
        raise Unverified(f"missing or invalid {SIGNATURE_HEADER}")


def parse(params: Mapping[str, str], delivery_id: str | None) -> MessageEvent | InboundSms | None:
    """The callback's event, the inbound message, or None for a status we do not act on
    (queued, sending, accepted, ...)."""
    sid = text_of(params.get("MessageSid") or params.get("SmsSid"), 64)
    if sid is None:
        raise Malformed("a Twilio request names its message by MessageSid")
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    if status in ("", "received") and "Body" in params:
        sender, to = text_of(params.get("From"), 40), text_of(params.get("To"), 40)
        if sender is None or to is None:
            raise Malformed("an inbound message has From and To")
        return InboundSms(event_id=sid, sender=sender, to=to, body=params.get("Body", "")[:1600])
    if status not in _STATUS:
        return None
    kind, settles = _STATUS[status]
    code = text_of(params.get("ErrorCode"), 10)
    detail = {"status": status, **({"errorCode": code} if code else {})}
    return MessageEvent(
        event_id=f"{sid}:{status}",
        kind=kind,
        delivery_id=delivery_id,
        message_id=sid,
        address=text_of(params.get("To"), 40),
        settles=settles,
        permanent=kind == EventKind.FAILED and code in PERMANENT_ERRORS,
        detail=detail,
    )


STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})


def keyword(body: str) -> str | None:
    """STOP, START or HELP when the message is one of their keywords (trimmed, any case)."""
    word = body.strip().upper()
    if word in STOP_WORDS:
        return "STOP"
    if word in START_WORDS:
        return "START"
    if word in HELP_WORDS:
        return "HELP"
    return None


def twiml_message(text: str | None) -> str:
    """A TwiML answer: one reply message, or none."""
    if not text:
        return '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{escaped}</Message></Response>'
