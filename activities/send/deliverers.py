"""Deliverers: one per channel, each a set of provider slots the pipeline leases.

A slot is an SMTP connection or an SMS request slot (one kept-alive HTTP connection), held by one
sender of the pipeline for a page; the slots of a channel are shared by every page of the worker
(`CAMPAIGNS_SMTP_POOL_SIZE`, `CAMPAIGNS_SMS_IN_FLIGHT`), so they also bound what a crash can
leave unanswered. `deliver` turns the provider's verdict into the ledger's answer
(README "Delivery guarantees (the ledger)").

When the channel's provider account has a rate limit (activities.send.throttle), a slot takes a
token right before it hands each message to the provider, waiting as long as the shared bucket
says, and one tenant's page holds only a part of the channel's slots, so a tenant waiting for its
tokens never keeps another tenant's page from a slot.
"""

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from temporalio import activity

from activities.send.model import Answer, Outgoing
from activities.send.throttle import Throttle, account_of
from core.enums import Channel
from core.settings import Settings
from providers.accounts import Sender
from providers.backoff import retry_delay
from providers.email_content import EmailEnvelope, wire_email
from providers.sms import SmsClient, SmsResult, SmsVerdict
from providers.smtp import SmtpLease, SmtpPool, SmtpVerdict

# Provider retries of one message (providers.backoff: capped exponential, or the SMS provider's
# Retry-After). A message the provider only defers (SMTP 4xx, SMS 429) is tried PROVIDER_TRIES
# times, then its claim is released and the page fails, so Temporal retries the page later with
# the workflow's backoff; from page attempt DEFERRAL_ATTEMPTS on, a message still deferred is
# recorded FAILED, so an address the provider defers for good never blocks the rest.
PROVIDER_TRIES = 6
DEFERRAL_ATTEMPTS = 8

# Sleeps before a provider retry; returns False (stop retrying) when the page was halted.
Wait = Callable[[float], Awaitable[bool]]


class Slot(Protocol):
    """A leased provider slot. The pipeline takes the rate limit's token (`admit`) before it
    claims a message, so a message waiting for its turn is never claimed (a crash while
    throttled leaves nothing UNKNOWN); `deliver` then hands the claimed message over."""

    def throttled(self) -> bool:
        """Whether its account has a rate limit; when not, `admit` is always at once."""
        ...

    def ready(self) -> bool: ...

    async def admit(self, wait: Wait) -> bool: ...

    async def deliver(self, item: Outgoing, wait: Wait) -> Answer: ...


class SmsSender(Protocol):
    """A leased SMS connection (providers.sms)."""

    async def send(
        self, to: str, body: str, idempotency_key: str, *, attempts: int = ..., wait: Wait = ...
    ) -> SmsResult: ...


class Deliverer(Protocol):
    channel: Channel
    slots: int
    # Ledger commits a page keeps in flight for this channel (activities/send/writer.py, "Why
    # lanes"): 2 when a send is shorter than a commit, so its slots would otherwise wait on steps.
    commit_lanes: int
    # Rendered chunks (CAMPAIGNS_SEND_CONCURRENCY messages each) kept ready for this channel's slots.
    feed_chunks: int
    # How long a step taken while a message is on the wire may wait to commit with other slots'
    # steps (activities/send/writer.py, "Gathering"): fewer, larger commits when the send outlasts
    # the step; 0 when the slot waits on its step.
    gather_seconds: float

    def lease(self) -> contextlib.AbstractAsyncContextManager[Slot]: ...


HALTED_THROTTLED = "halted while waiting for the rate limit"


class _Gate:
    """A deliverer's view of the throttle: its channel's account for one tenant, with the tenant's
    weight in the split of the account (1.0 unless its policy says otherwise). Without a throttle,
    or for an account without limits, it admits at once and keeps all the channel's slots."""

    def __init__(
        self,
        throttle: Throttle | None,
        channel: Channel,
        tenant_id: str,
        slots: int,
        weight: float,
        account: str | None = None,
    ) -> None:
        # A tenant's own provider account is its own rate-limit account (`account:<id>`, limited
        # only when CAMPAIGNS_RATE_LIMITS names it); the platform's is the channel's.
        self._account = account or account_of(channel)
        self._throttle = throttle if throttle is not None and throttle.limited(self._account) else None
        self._tenant = tenant_id
        self._weight = weight
        self._all_slots = slots
        self.slots = slots if self._throttle is None else self._throttle.slot_limit(self._account, slots)

    def slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        if self._throttle is None:
            return contextlib.nullcontext()
        return self._throttle.slot(self._account, self._tenant, self._all_slots)

    async def admit(self, wait: Wait) -> bool:
        """Wait for this message's token; False when the page was halted first."""
        if self._throttle is None:
            return True
        return await self._throttle.acquire(self._account, self._tenant, self._weight, wait)

    def throttled(self) -> bool:
        return self._throttle is not None

    def ready(self) -> bool:
        """Whether `admit` would return at once."""
        return self._throttle is None or self._throttle.ready(self._account, self._tenant)


def _deferred(item: Outgoing, detail: str) -> Answer:
    """A message the provider still defers after PROVIDER_TRIES: nothing was taken, so the claim
    is released for a later page attempt; from DEFERRAL_ATTEMPTS on it is FAILED."""
    attempt = activity.info().attempt if activity.in_activity() else 1
    if attempt >= DEFERRAL_ATTEMPTS:
        return Answer.failed(item, f"still deferred at page attempt {attempt}: {detail}")
    return Answer.not_sent(item, f"deferred: {detail}", deferred=True)


class EmailDeliverer:
    channel = Channel.EMAIL
    commit_lanes = 1  # an SMTP transaction outlasts a step
    feed_chunks = 2  # a rendered email may be large; two chunks last ~50 ms of sending
    gather_seconds = 0.002  # the transaction outlasts a step: its step may wait for others

    def __init__(
        self,
        pool: SmtpPool,
        settings: Settings,
        *,
        campaign_id: str,
        tenant_id: str,
        throttle: Throttle | None = None,
        weight: float = 1.0,
        sender: Sender | None = None,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._campaign = campaign_id
        self._tenant = tenant_id
        # From, Reply-To and the DKIM key of the campaign's identity (activities.send.identity).
        self._sender = sender or Sender(email_from=settings.email_from, sms_from=settings.sms_from)
        account = self._sender.account_name(Channel.EMAIL)
        self._gate = _Gate(throttle, self.channel, tenant_id, settings.smtp_pool_size, weight, account)
        self.slots = self._gate.slots

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Slot]:
        async with self._gate.slot(), self._pool.lease() as connection:
            yield _EmailSlot(self, connection)


class _EmailSlot:
    def __init__(self, deliverer: EmailDeliverer, connection: SmtpLease) -> None:
        self._d = deliverer
        self._connection = connection

    def throttled(self) -> bool:
        return self._d._gate.throttled()

    def ready(self) -> bool:
        return self._d._gate.ready()

    async def admit(self, wait: Wait) -> bool:
        return await self._d._gate.admit(wait)

    async def deliver(self, item: Outgoing, wait: Wait) -> Answer:
        d = self._d
        customer = item.message.customer
        envelope = EmailEnvelope(
            delivery_id=item.delivery_id,
            campaign_id=d._campaign,
            tenant_id=d._tenant,
            customer_id=customer["id"],
            sender=d._sender.email_from,
            to=customer["email"],
            reply_to=d._sender.reply_to,
        )
        if item.parts is None:
            return Answer.failed(item, "the message has no rendered parts")
        try:
            wire = wire_email(envelope, item.parts, d._settings)
        except ValueError as err:  # e.g. an address that cannot be written in ASCII: nothing sent
            return Answer.failed(item, f"cannot build the message: {err}")
        data = d._sender.signed(wire.data)  # DKIM, last: nothing may change the bytes after it
        for attempt in range(PROVIDER_TRIES):
            # The first attempt's token was taken before the claim; each retry takes its own.
            if attempt and not await d._gate.admit(wait):
                return Answer.not_sent(item, HALTED_THROTTLED)
            result = await self._connection.send(wire.sender, wire.to, data, wire.message_id)
            if result.verdict != SmtpVerdict.TEMPORARY or attempt == PROVIDER_TRIES - 1:
                break
            if not await wait(retry_delay(attempt)):
                break
        if result.verdict == SmtpVerdict.ACCEPTED:
            return Answer.sent(item, result.message_id)
        if result.verdict == SmtpVerdict.REFUSED:  # 5xx: a bounce, never retried
            return Answer.bounced(item, result.detail)
        if result.verdict == SmtpVerdict.INVALID:
            return Answer.failed(item, result.detail)
        if result.verdict == SmtpVerdict.TEMPORARY:
            return _deferred(item, result.detail)
        if result.verdict == SmtpVerdict.NOT_SENT:
            return Answer.not_sent(item, result.detail)
        return Answer.unknown(item, result.detail)


class SmsDeliverer:
    channel = Channel.SMS
    commit_lanes = 2  # one request, shorter than a commit
    gather_seconds = 0.0  # the slot waits on its step: it commits at once
    # Bodies are small and sent fast: two chunks (~30 ms of sending) ran dry on slow render round
    # trips (slots gave back their leases mid-page ~50 times per 20,000 SMS; with six, never).
    feed_chunks = 6

    def __init__(
        self,
        client: SmsClient,
        settings: Settings,
        *,
        tenant_id: str = "",
        throttle: Throttle | None = None,
        weight: float = 1.0,
        account: str | None = None,
    ) -> None:
        self._client = client
        self._gate = _Gate(throttle, self.channel, tenant_id, settings.sms_in_flight, weight, account)
        self.slots = self._gate.slots

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Slot]:
        async with self._gate.slot(), self._client.lease() as connection:
            yield _SmsSlot(connection, self._gate)


class _SmsSlot:
    def __init__(self, connection: "SmsSender", gate: "_Gate") -> None:
        self._connection = connection
        self._gate = gate

    def throttled(self) -> bool:
        return self._gate.throttled()

    def ready(self) -> bool:
        return self._gate.ready()

    async def admit(self, wait: Wait) -> bool:
        return await self._gate.admit(wait)

    async def deliver(self, item: Outgoing, wait: Wait) -> Answer:
        if item.body is None:
            return Answer.failed(item, "the message has no rendered body")
        # Its token was taken before the claim; the retries inside reuse the same key and token.
        result = await self._connection.send(
            item.message.customer["phone"], item.body, item.delivery_id, attempts=PROVIDER_TRIES, wait=wait
        )
        if result.verdict == SmsVerdict.ACCEPTED:
            return Answer.sent(item, result.message_id)
        if result.verdict == SmsVerdict.REJECTED:
            return Answer.failed(item, result.detail)
        if result.verdict == SmsVerdict.THROTTLED:
            return _deferred(item, result.detail)
        if result.verdict == SmsVerdict.NOT_SENT:
            return Answer.not_sent(item, result.detail)
        if result.status is not None:
            # Every attempt with this key got a 5xx: the provider may still have taken it.
            return Answer.unknown(item, result.detail, reason="PROVIDER_ERROR")
        return Answer.unknown(item, result.detail)
