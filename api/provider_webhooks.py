"""Checking a provider's request with the registered credentials, and reading its events
(README "Provider webhooks"). Each provider's scheme lives in providers.webhooks.<provider>; this
module picks the one a registration names and turns the request into what api.provider_ledger
acts on.

Amazon SES (through SNS) needs two fetches: the signing certificate and, for a subscription, the
confirmation URL. Both go through the `Fetcher` the route depends on (`sns_fetcher`): tests
override it with one that serves a locally generated certificate. The default fetches over https
only from the amazonaws.com hosts the caller already checked, with no redirects, a timeout and a
size bound, and keeps certificates in memory.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import aiohttp

from core.secrets import unseal
from db.provider_webhooks import ProviderWebhookRow
from providers.webhooks import InboundSms, MessageEvent, Unverified, mailgun, postmark, sendgrid, ses, twilio
from providers.webhooks.ses import Fetcher

MAX_FETCH_BYTES = 64 * 1024
MAX_CERTIFICATES = 64  # AWS rotates signing certificates rarely: a few per region at most
_certificates: dict[str, bytes] = {}


async def fetch_from_aws(url: str) -> bytes:
    """GET an SNS certificate or confirmation URL (already checked to be an amazonaws.com https URL)."""
    if url in _certificates:
        return _certificates[url]
    timeout = aiohttp.ClientTimeout(total=5.0)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url, allow_redirects=False) as response:
                # Read one byte past the bound: a larger answer is refused without holding it all.
                content = await response.content.read(MAX_FETCH_BYTES + 1)
                status = response.status
    except (aiohttp.ClientError, TimeoutError) as err:
        raise Unverified("the SNS URL could not be fetched") from err
    if status != 200 or len(content) > MAX_FETCH_BYTES:
        raise Unverified("the SNS URL did not answer")
    if url.endswith(".pem") and len(_certificates) < MAX_CERTIFICATES:
        _certificates[url] = content
    return content


async def sns_fetcher() -> Fetcher:
    """The fetcher SES verification uses (a dependency, so tests can serve their own certificate)."""
    return fetch_from_aws


@dataclass(frozen=True)
class Incoming:
    """The parts of a provider's request a check may read. `url` is the public URL the provider
    called (the configured public URL + path + query), which Twilio signs."""

    body: bytes
    headers: Mapping[str, str]
    url: str
    query: Mapping[str, str]


@dataclass
class Verified:
    """A request proven to come from the provider: its events, how many it held that we do not act
    on, an inbound SMS, or an SNS subscription it confirmed."""

    events: list[MessageEvent] = field(default_factory=list)
    skipped: int = 0
    inbound: InboundSms | None = None
    confirmed: bool = False


def _one(event: MessageEvent | None) -> Verified:
    return Verified([event]) if event is not None else Verified(skipped=1)


def _twilio(creds: dict[str, str], req: Incoming) -> Verified:
    pairs = parse_qsl(req.body.decode("utf-8", errors="replace"), keep_blank_values=True)
    twilio.verify(creds["secret"], req.url, pairs, req.headers.get(twilio.SIGNATURE_HEADER))
    parsed = twilio.parse(dict(pairs), req.query.get("deliveryId"))
    if isinstance(parsed, InboundSms):
        return Verified(inbound=parsed)
    return _one(parsed)


def _sendgrid(creds: dict[str, str], req: Incoming) -> Verified:
    signature = req.headers.get(sendgrid.SIGNATURE_HEADER)
    sendgrid.verify(creds["publicKey"], signature, req.headers.get(sendgrid.TIMESTAMP_HEADER), req.body)
    events, skipped = sendgrid.parse(req.body)
    return Verified(events, skipped)


def _mailgun(creds: dict[str, str], req: Incoming) -> Verified:
    payload = mailgun.load(req.body)
    mailgun.verify(creds["secret"], payload)
    return _one(mailgun.parse(payload))


def _postmark(creds: dict[str, str], req: Incoming) -> Verified:
    postmark.verify(creds["username"], creds["password"], req.headers.get("authorization"))
    return _one(postmark.parse(req.body))


async def _ses(creds: dict[str, str], req: Incoming, fetch: Fetcher) -> Verified:
    message = ses.load(req.body)
    await ses.verify(message, creds["topicArn"], fetch)
    if message.get("Type") == "SubscriptionConfirmation":
        await ses.confirm(message, fetch)
        return Verified(confirmed=True)
    if message.get("Type") != "Notification":
        return Verified(skipped=1)
    return Verified(ses.parse(message))


_SYNC = {"twilio": _twilio, "sendgrid": _sendgrid, "mailgun": _mailgun, "postmark": _postmark}


async def verified(hook: ProviderWebhookRow, req: Incoming, fetch: Fetcher) -> Verified:
    """The request's content once its provider's check passes (Unverified / Malformed otherwise)."""
    creds = json.loads(unseal(hook.credentials))
    if hook.provider == "ses":
        return await _ses(creds, req, fetch)
    return _SYNC[hook.provider](creds, req)
