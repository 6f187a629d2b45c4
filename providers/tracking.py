"""Signed tracking tokens: the pixel, click-redirect and unsubscribe links carried by every email.

A token is `<payload>.<mac>`, both unpadded urlsafe base64. The payload names the link kind, the
campaign, the delivery (one message) and, for clicks, the link id and its target URL; the mac is
HMAC-SHA256 over the payload, truncated to 128 bits, keyed by a key derived from
`CAMPAIGNS_TRACKING_SECRET` (derived, so the token key differs from the other secrets even when
development uses one value for all of them).

Because the click target travels inside the signed payload, the redirect endpoint can only ever
send a browser to a URL that this service itself wrote into a message: altering the URL breaks
the signature, so no URL allow-list has to be stored or looked up. What gets signed is decided
when a message is built: only URLs written in the template itself (`providers.template_links`),
never one that came from a recipient's fields, so "redirects only to URLs that were in the
template" holds by construction.

Tokens do not expire: emails are opened, clicked and unsubscribed from months later.
"""

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

VERSION = "1"
MAC_BYTES = 16
MAX_TOKEN_CHARS = 8192  # longer input is refused before any decoding work
_SEP = "\x1f"  # ASCII unit separator: never part of an id; the URL is the last field
_KEY_LABEL = b"campaigns/tracking-token/v1"
_SAFE_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f]+", re.IGNORECASE)
_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class LinkKind(StrEnum):
    OPEN = "o"
    CLICK = "c"
    UNSUBSCRIBE = "u"


@dataclass(frozen=True)
class TrackingClaim:
    """What a valid token asserts: this link of this message of this campaign."""

    kind: LinkKind
    campaign_id: str
    delivery_id: str
    link_id: str = ""
    url: str = ""


def is_trackable_url(url: str) -> bool:
    """Only absolute http(s) URLs without whitespace or control characters are rewritten/redirected."""
    return _SAFE_URL.fullmatch(url) is not None


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(raw: bytes) -> str:
    """Unpadded urlsafe base64 (binascii directly: three tokens per email, so it counts)."""
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Signs and verifies tracking tokens with one secret; cheap to reuse (the keyed HMAC is cached)."""

    def __init__(self, secret: str) -> None:
        key = hmac.new(secret.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    def _mac(self, payload: bytes) -> bytes:
        h = self._base.copy()
        h.update(payload)
        return h.digest()[:MAC_BYTES]

    def sign(self, claim: TrackingClaim) -> str:
        return self.token(claim.kind, claim.campaign_id, claim.delivery_id, claim.link_id, claim.url)

    def token(
        self, kind: LinkKind, campaign_id: str, delivery_id: str, link_id: str = "", url: str = ""
    ) -> str:
        """The token of a claim given by its fields (every email carries three or more tokens, so
        no claim object is built on the send path)."""
        if _SEP in campaign_id or _SEP in delivery_id or _SEP in link_id:
            raise ValueError("tracking ids must not contain the field separator")
        payload = (
            f"{VERSION}{_SEP}{kind.value}{_SEP}{campaign_id}{_SEP}{delivery_id}{_SEP}{link_id}{_SEP}{url}"
        )
        raw = payload.encode("utf-8")
        return f"{_b64(raw)}.{_b64(self._mac(raw))}"

    def verify(self, token: str, kind: LinkKind) -> TrackingClaim | None:
        """The claim of a genuine token of `kind`; None for anything forged, altered or malformed."""
        if len(token) > MAX_TOKEN_CHARS or _TOKEN.fullmatch(token) is None:
            return None
        body, _, mac_text = token.partition(".")
        try:
            payload = _unb64(body)
            mac = _unb64(mac_text)
        except (binascii.Error, ValueError):
            return None
        if len(mac) != MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            fields = payload.decode("utf-8").split(_SEP, 5)
        except UnicodeDecodeError:
            return None
        if len(fields) != 6 or fields[0] != VERSION or fields[1] != kind.value:
            return None
        _, _, campaign_id, delivery_id, link_id, url = fields
        if not campaign_id or not delivery_id:
            return None
        return TrackingClaim(kind, campaign_id, delivery_id, link_id, url)


class TrackingLinks:
    """Builds the public tracking URLs of one message under `public_url`."""

    def __init__(self, public_url: str, secret: str) -> None:
        self.base = public_url.rstrip("/")
        self.signer = TokenSigner(secret)

    def open_url(self, campaign_id: str, delivery_id: str) -> str:
        token = self.signer.token(LinkKind.OPEN, campaign_id, delivery_id)
        return f"{self.base}/t/o/{token}"

    def click_url(self, campaign_id: str, delivery_id: str, link_id: str, url: str) -> str:
        token = self.signer.token(LinkKind.CLICK, campaign_id, delivery_id, link_id, url)
        return f"{self.base}/t/c/{token}"

    def unsubscribe_url(self, campaign_id: str, delivery_id: str) -> str:
        token = self.signer.token(LinkKind.UNSUBSCRIBE, campaign_id, delivery_id)
        return f"{self.base}/t/u/{token}"


@lru_cache(maxsize=8)
def tracking_links(public_url: str, secret: str) -> TrackingLinks:
    return TrackingLinks(public_url, secret)


@lru_cache(maxsize=8)
def token_signer(secret: str) -> TokenSigner:
    return TokenSigner(secret)
