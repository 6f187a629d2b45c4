"""SMTP delivery over a small pool of persistent connections.

aiosmtplib opens each connection (greeting, EHLO, STARTTLS, AUTH); its mail transactions then run
on providers.smtp_session, which costs half the client CPU per message and pipelines the envelope
when the server announces PIPELINING.

Persistent, pooled connections are ~3x faster than one connection per message (runtime.md).
Every send is classified so the ledger can say what happened:
ACCEPTED (server took it), REFUSED (permanent 5xx: a bounce), TEMPORARY (4xx: the server defers
it; retry later), NOT_SENT (nothing of the message left the client: safe to retry later), INVALID
(an address this client cannot put in an envelope: never retried), AMBIGUOUS (the connection broke
after the message data was handed over: maybe sent, never resent by itself).

The envelope (MAIL, RCPT, DATA up to the server's 354) and the message are sent as separate
steps, so a connection that breaks before the message is written (typically a pooled connection
the server closed while idle) is NOT_SENT, and is retried once at once on a fresh connection;
only a break after the message was handed over is AMBIGUOUS.
"""

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parseaddr
from enum import StrEnum
from typing import cast

import aiosmtplib

from core import tracing
from core.settings import Settings
from providers.smtp_session import SmtpConnectionLost, SmtpReply, SmtpSession

log = logging.getLogger(__name__)


class SmtpVerdict(StrEnum):
    ACCEPTED = "ACCEPTED"
    REFUSED = "REFUSED"
    TEMPORARY = "TEMPORARY"
    NOT_SENT = "NOT_SENT"
    INVALID = "INVALID"
    AMBIGUOUS = "AMBIGUOUS"


@dataclass(frozen=True)
class SmtpResult:
    verdict: SmtpVerdict
    detail: str = ""
    message_id: str | None = None


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    pool_size: int = 4
    timeout: float = 30.0

    @classmethod
    def platform(cls, settings: Settings, pool_size: int | None = None) -> "SmtpConfig":
        """The platform's relay (`CAMPAIGNS_SMTP_*`): the fallback of tenants without their own."""
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            pool_size=settings.smtp_pool_size if pool_size is None else pool_size,
        )


class SmtpPool:
    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self._idle: asyncio.Queue[SmtpSession | None] = asyncio.Queue()
        for _ in range(config.pool_size):
            self._idle.put_nowait(None)  # None: a slot without an open connection yet

    async def _connect(self) -> SmtpSession:
        """Open, greet, secure and log in with aiosmtplib, then run transactions on the session."""
        c = self._config
        client = aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            timeout=c.timeout,
            start_tls=c.starttls,
            use_tls=False,
            validate_certs=True,
        )
        await client.connect()
        try:
            if client.is_ehlo_or_helo_needed:  # (connect says EHLO only on its way to STARTTLS)
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            if c.username:
                await client.login(c.username, c.password or "")
            transport = client.transport
            if transport is None:  # pragma: no cover - connect set it
                raise aiosmtplib.SMTPServerDisconnected("no transport after connecting")
        except BaseException:
            client.close()
            raise
        # (uvloop's TLS transports are not asyncio.Transport subclasses, but the same interface)
        pipelining = client.supports_extension("pipelining")
        return SmtpSession(cast(asyncio.Transport, transport), c.timeout, pipelining=pipelining)

    async def send(
        self, sender: str, recipient: str, data: bytes, message_id: str | None = None
    ) -> SmtpResult:
        """Send one message on the next free connection."""
        async with self.lease() as lease:
            return await lease.send(sender, recipient, data, message_id)

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator["SmtpLease"]:
        """Hold one connection of the pool (FIFO among waiters) for several messages in a row:
        the send pipeline's slot, so a message is claimed only when a connection is its own."""
        client = await self._idle.get()
        lease = SmtpLease(self, client)
        try:
            yield lease
        finally:
            self._idle.put_nowait(lease.client)

    async def close(self) -> None:
        for _ in range(self._config.pool_size):
            client = await self._idle.get()
            if client is not None:
                await client.quit()  # never raises: a broken connection is just closed
            self._idle.put_nowait(None)


class SmtpLease:
    """One pooled connection held by one sender; reconnects when the server dropped it."""

    def __init__(self, pool: SmtpPool, client: SmtpSession | None) -> None:
        self._pool = pool
        self.client = client

    async def send(
        self, sender: str, recipient: str, data: bytes, message_id: str | None = None
    ) -> SmtpResult:
        with tracing.provider_span("smtp.send", {"messaging.system": "smtp"}) as span:
            result = await self._send(sender, recipient, data, message_id)
            tracing.annotate(span, **{"campaigns.verdict": result.verdict.value})
            return result

    async def _send(self, sender: str, recipient: str, data: bytes, message_id: str | None) -> SmtpResult:
        client = self.client
        # A pooled connection may have been closed by the server while idle: if it breaks before
        # the data, nothing was sent, so one more try on a fresh connection is safe.
        for fresh in (False, True):
            reused = client is not None and client.open
            if not reused:
                if client is not None:
                    await client.quit()
                try:
                    client = self.client = await self._pool._connect()
                except (OSError, aiosmtplib.SMTPException, TimeoutError) as err:
                    self.client = None
                    return SmtpResult(SmtpVerdict.NOT_SENT, f"connect failed: {err}")
            if client is None:  # pragma: no cover - connect either returns a client or raises
                break
            result = await _transaction(client, sender, recipient, data, message_id)
            broken = result.verdict in (SmtpVerdict.AMBIGUOUS, SmtpVerdict.NOT_SENT)
            if broken or not client.open:
                await client.quit()
                client = self.client = None
            if result.verdict != SmtpVerdict.NOT_SENT or not reused or fresh:
                return result
        return SmtpResult(SmtpVerdict.NOT_SENT, "no connection")


async def _transaction(
    client: SmtpSession, sender: str, recipient: str, data: bytes, message_id: str | None
) -> SmtpResult:
    try:
        await client.envelope(_address_of(sender), recipient)
    except SmtpReply as err:
        # An answer (RCPT 4xx/5xx, or MAIL refused): the connection is fine, reset the envelope.
        await _reset(client, err.code)
        return SmtpResult(_by_code(err.code), f"{err.code} {err.message}")
    except ValueError as err:  # an address that cannot go into an ASCII envelope
        await _reset(client, 0)
        return SmtpResult(SmtpVerdict.INVALID, f"invalid address: {err}")
    except (OSError, TimeoutError) as err:  # SmtpConnectionLost is an OSError
        # Broken before the message was written: the server cannot have it.
        return SmtpResult(SmtpVerdict.NOT_SENT, f"connection lost before the data: {err}")
    try:
        accepted = await client.content(data)
    except SmtpReply as err:
        await _reset(client, err.code)
        return SmtpResult(_by_code(err.code), f"{err.code} {err.message}")
    except (OSError, TimeoutError) as err:
        # The connection broke once the message was on its way: the server may have it.
        return SmtpResult(SmtpVerdict.AMBIGUOUS, str(err) or type(err).__name__)
    return SmtpResult(SmtpVerdict.ACCEPTED, accepted, message_id)


def _by_code(code: int) -> SmtpVerdict:
    """5xx: refused for good (a bounce); anything else the server answered: deferred."""
    return SmtpVerdict.REFUSED if code >= 500 else SmtpVerdict.TEMPORARY


async def _reset(client: SmtpSession, code: int) -> None:
    """After a refused envelope: RSET so the connection can carry the next message; a 421 (the
    server is closing the channel) closes it instead."""
    if code == 421:
        await client.quit()
        return
    try:
        await client.rset()
    except (SmtpReply, SmtpConnectionLost):
        client.close()


@functools.lru_cache(maxsize=256)
def _address_of(sender: str) -> str:
    """`Name <a@b>` -> `a@b` for the SMTP envelope (a few senders, parsed once each: the email
    package's address parser costs more than the rest of the envelope)."""
    return parseaddr(sender)[1] or sender
