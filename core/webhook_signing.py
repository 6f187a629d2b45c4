"""Signatures of outbound webhooks: the Standard Webhooks scheme (standardwebhooks.com).

A request carries `Webhook-Id`, `Webhook-Timestamp` (Unix seconds) and `Webhook-Signature`, a
space-separated list of `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`. The key is the
endpoint's secret `whsec_<base64 of 32 random bytes>` with the prefix dropped and the rest
base64-decoded. Signing id and timestamp along with the body means a captured request cannot be
replayed later (receivers reject timestamps older than a few minutes) nor passed off as another.
While a rotated-out secret is still honoured, each request is signed with both (two entries), so a
receiver may switch keys at its own pace.
"""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# Receivers should refuse requests whose timestamp is further than this from their clock.
TOLERANCE_SECONDS = 300


def new_secret() -> str:
    """A fresh signing secret, `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of a request."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `Webhook-Signature` value: one signature per secret still honoured."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


def verify(secret: str, msg_id: str, timestamp: str, signature: str, body: bytes, *, now: float) -> bool:
    """What a receiver does: the timestamp is recent and one `v1` signature matches (constant time)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > TOLERANCE_SECONDS:
        return False
    expected = sign(secret, msg_id, sent, body).encode()
    return any(hmac.compare_digest(expected, given.encode()) for given in signature.split(" ") if given)
