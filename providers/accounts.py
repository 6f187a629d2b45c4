"""Tenants' provider accounts as a worker uses them: who a page sends as (`Sender`), and the
connection pools of each account (`AccountPools`), docs/tenants-and-providers.md.

Pools are per account: an SMTP relay's connections carry only that account's mail, and an SMS
client is per (account, sender number), since the client writes its sender into every request.
The registry creates a pool on first use, keeps at most `limit` of each kind (the least recently
used one beyond that is closed once its current leases end), replaces a pool when its account
was edited (the key holds the account's `updated_at`), and closes all of them on worker shutdown.
The platform's own relay and SMS account (`CAMPAIGNS_SMTP_*`, `CAMPAIGNS_SMS_*`) stay in
ActivityDeps and are the fallback of every tenant without an account of its own.

SMS adapters: a provider is a function from an `SmsAccount` and a sender to an object with
`lease()` (an async context manager giving a sender with `send(to, body, idempotency_key,
attempts, wait) -> SmsResult`) and `close()` (activities.send.deliverers.SmsSender); `SMS_ADAPTERS`
maps the account's `provider` to it. `twilio-compatible` is the form-post client of providers.sms;
Vonage or Telnyx (JSON bodies, their own auth headers and answers) would each be one more class
with that shape and one more entry here, and the API's `provider` choices.
"""

import asyncio
import base64
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from providers.dkim import DkimSigner
from providers.sms import SmsClient
from providers.smtp import SmtpConfig, SmtpPool

log = logging.getLogger(__name__)

# Seconds an evicted SMS client is kept open for the pages still sending through it.
SMS_EVICT_GRACE = 120.0


@dataclass(frozen=True)
class SmtpAccount:
    id: str
    version: str  # changes when the account is edited: a new pool with the new settings
    host: str
    port: int
    starttls: bool
    username: str | None
    password: str | None

    def config(self, pool_size: int) -> SmtpConfig:
        return SmtpConfig(
            host=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            starttls=self.starttls,
            pool_size=pool_size,
        )


@dataclass(frozen=True)
class SmsAccount:
    id: str
    version: str
    provider: str
    url: str
    account_sid: str | None
    token: str
    # Where the provider reports each message's status (the tenant's Twilio webhook URL).
    status_callback: str | None = None


@dataclass(frozen=True)
class Sender:
    """Who a page's messages come from and what they go through: resolved once per page from
    the campaign's identity (activities.send.identity). None accounts: the platform's."""

    email_from: str
    sms_from: str
    reply_to: str | None = None
    smtp_account: SmtpAccount | None = None
    sms_account: SmsAccount | None = None
    signer: DkimSigner | None = None
    identity_id: str | None = None

    def signed(self, message: bytes) -> bytes:
        """The message as it goes on the wire: DKIM-signed when the sender has a key."""
        return message if self.signer is None else self.signer.sign(message)

    def account_name(self, channel: str) -> str | None:
        """The rate-limit account of a tenant's own provider account (None: the platform's)."""
        account = self.smtp_account if channel == "EMAIL" else self.sms_account
        return None if account is None else f"account:{account.id}"


def twilio_client(account: SmsAccount, sender: str, max_in_flight: int) -> SmsClient:
    """Twilio and compatible APIs: HTTP Basic `accountSid:authToken` when there is an account
    SID, else the token as a bearer credential."""
    authorization = None
    if account.account_sid:
        pair = f"{account.account_sid}:{account.token}".encode()
        authorization = f"Basic {base64.b64encode(pair).decode()}"
    return SmsClient(
        account.url,
        account.token,
        sender,
        max_in_flight=max_in_flight,
        status_callback=account.status_callback,
        authorization=authorization,
    )


SMS_ADAPTERS: dict[str, Callable[[SmsAccount, str, int], SmsClient]] = {"twilio-compatible": twilio_client}


class AccountPools:
    """The pools of tenants' accounts in one worker (see the module's docstring)."""

    def __init__(self, limit: int = 32) -> None:
        self._limit = limit
        self._smtp: OrderedDict[tuple[str, str], SmtpPool] = OrderedDict()
        self._sms: OrderedDict[tuple[str, str, str, str], SmsClient] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def smtp(self, account: SmtpAccount, pool_size: int) -> SmtpPool:
        key = (account.id, account.version)
        pool = self._smtp.get(key)
        if pool is None:
            pool = self._smtp[key] = SmtpPool(account.config(pool_size))
            self._evict_smtp()
        self._smtp.move_to_end(key)
        return pool

    def sms(self, account: SmsAccount, sender: str, max_in_flight: int) -> SmsClient:
        key = (account.id, account.version, sender, account.status_callback or "")
        client = self._sms.get(key)
        if client is None:
            adapter = SMS_ADAPTERS.get(account.provider, twilio_client)
            client = self._sms[key] = adapter(account, sender, max_in_flight)
            self._evict_sms()
        self._sms.move_to_end(key)
        return client

    def _evict_smtp(self) -> None:
        while len(self._smtp) > self._limit:
            _, pool = self._smtp.popitem(last=False)
            self._background(pool.close())  # waits for the pool's leases to come back

    def _evict_sms(self) -> None:
        while len(self._sms) > self._limit:
            _, client = self._sms.popitem(last=False)
            self._background(_close_later(client))

    def _background(self, closing: "asyncio.Future[None] | object") -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(closing)  # type: ignore[arg-type]
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every pool (worker shutdown)."""
        smtp, sms = list(self._smtp.values()), list(self._sms.values())
        self._smtp.clear()
        self._sms.clear()
        for task in list(self._closing):
            task.cancel()
        for pool in smtp:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 10)
        for client in sms:
            await client.close()


async def _close_later(client: SmsClient) -> None:
    try:
        await asyncio.sleep(SMS_EVICT_GRACE)
    finally:
        await client.close()
