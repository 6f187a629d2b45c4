"""Deliverers: one per channel, each a set of provider slots the pipeline leases.

A slot is an SMTP connection or an SMS request slot (one kept-alive HTTP connection), held by one
sender of the pipeline for a page; the slots of a channel are shared by every page of the worker
(`CAMPAIGNS_SMTP_POOL_SIZE`, `CAMPAIGNS_SMS_IN_FLIGHT`), so they also bound what a crash can
leave unanswered. `deliver` turns the provider's verdict into the ledger's answer
(README "Delivery guarantees (the ledger)").
"""

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from temporalio import activity

from activities.send.model import Answer, Outgoing
from core.enums import Channel
from core.settings import Settings
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
    async def deliver(self, item: Outgoing, wait: Wait) -> Answer: ...


class SmsSender(Protocol):
    """A leased SMS connection (providers.sms)."""

    async def send(
        self, to: str, body: str, idempotency_key: str, attempts: int = ..., wait: Wait = ...
    ) -> SmsResult: ...


class Deliverer(Protocol):
    channel: Channel
    slots: int

    def lease(self) -> contextlib.AbstractAsyncContextManager[Slot]: ...


def _deferred(item: Outgoing, detail: str) -> Answer:
    """A message the provider still defers after PROVIDER_TRIES: nothing was taken, so the claim
    is released for a later page attempt; from DEFERRAL_ATTEMPTS on it is FAILED."""
    attempt = activity.info().attempt if activity.in_activity() else 1
    if attempt >= DEFERRAL_ATTEMPTS:
        return Answer.failed(item, f"still deferred at page attempt {attempt}: {detail}")
    return Answer.not_sent(item, f"deferred: {detail}", deferred=True)


class EmailDeliverer:
    channel = Channel.EMAIL

    def __init__(self, pool: SmtpPool, settings: Settings, *, campaign_id: str, tenant_id: str) -> None:
        self._pool = pool
        self._settings = settings
        self._campaign = campaign_id
        self._tenant = tenant_id
        self.slots = settings.smtp_pool_size

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Slot]:
        async with self._pool.lease() as connection:
            yield _EmailSlot(self, connection)


class _EmailSlot:
    def __init__(self, deliverer: EmailDeliverer, connection: SmtpLease) -> None:
        self._d = deliverer
        self._connection = connection

    async def deliver(self, item: Outgoing, wait: Wait) -> Answer:
        d = self._d
        customer = item.message.customer
        envelope = EmailEnvelope(
            delivery_id=item.delivery_id,
            campaign_id=d._campaign,
            tenant_id=d._tenant,
            customer_id=customer["id"],
            sender=d._settings.email_from,
            to=customer["email"],
        )
        if item.parts is None:
            return Answer.failed(item, "the message has no rendered parts")
        try:
            wire = wire_email(envelope, item.parts, d._settings)
        except ValueError as err:  # e.g. an address that cannot be written in ASCII: nothing sent
            return Answer.failed(item, f"cannot build the message: {err}")
        for attempt in range(PROVIDER_TRIES):
            result = await self._connection.send(wire.sender, wire.to, wire.data, wire.message_id)
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

    def __init__(self, client: SmsClient, settings: Settings) -> None:
        self._client = client
        self.slots = settings.sms_in_flight

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Slot]:
        async with self._client.lease() as connection:
            yield _SmsSlot(connection)


class _SmsSlot:
    def __init__(self, connection: "SmsSender") -> None:
        self._connection = connection

    async def deliver(self, item: Outgoing, wait: Wait) -> Answer:
        if item.body is None:
            return Answer.failed(item, "the message has no rendered body")
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
