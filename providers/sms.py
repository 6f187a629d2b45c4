"""SMS over a Twilio-style HTTP API: a form post with an idempotency key per message.

Posted with our own lean HTTP/1.1 client (providers/http1.py): the request head is encoded once
per client and only the body, its length and the key change per message; kept-alive connections
are reused. aiohttp's request machinery was ~37% of the worker's CPU on SMS campaigns (issue 14);
httpx was slower still (runtime.md). The provider dedupes on `Idempotency-Key`, so a retry after a
timeout or a 5xx is safe for SMS: every retry of one message reuses its key.

At most `max_in_flight` requests are in flight per client, each on its own connection. A caller
that sends many messages holds a `lease()`: one connection (and one of those slots) for as long as
it likes, so a send pipeline with N slots is bounded by the client's limit, not by its own
bookkeeping. `SmsClient.send` is a lease for one message.

Retries use capped exponential backoff, or the provider's `Retry-After` when it gives one (capped
too). A 429 means the provider did not take the message; after a 5xx or a broken connection it
may have, so the message stays AMBIGUOUS unless a later attempt with the same key is answered.
"""

import asyncio
import json
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from types import TracebackType
from typing import TypedDict, Unpack

from core import tracing
from providers.backoff import retry_delay
from providers.http1 import (
    ClosedBeforeResponse,
    ConnectFailed,
    Endpoint,
    Http1Connection,
    Http1Error,
    RequestHead,
    Response,
    form_quote,
)

# Seconds a message the provider may already hold is retried (same key) while it throttles.
TAKEN_PATIENCE = 30.0


class SmsVerdict(StrEnum):
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"  # the provider refused this message for good (4xx)
    THROTTLED = "THROTTLED"  # 429: not taken now; try again after `retry_after`
    NOT_SENT = "NOT_SENT"  # nothing reached the provider
    AMBIGUOUS = "AMBIGUOUS"  # may have reached it (5xx, timeout); retrying with the same key is safe


@dataclass(frozen=True)
class SmsResult:
    verdict: SmsVerdict
    detail: str = ""
    message_id: str | None = None
    # The provider's Retry-After, in seconds, when it gave one.
    retry_after: float | None = None
    # The HTTP status when the provider answered (None: no answer).
    status: int | None = None


async def _sleep(seconds: float) -> bool:
    await asyncio.sleep(seconds)
    return True


# Seconds a kept-alive connection may idle before we stop trusting it (aiohttp's default): servers
# close idle connections, and a request written as one closes is a needless retry.
IDLE_LIMIT = 15.0
USER_AGENT = "campaigns-sms/1"


class _Slots:
    """A FIFO limit on requests in flight (asyncio.Semaphore's fairness varied across 3.11 patches)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class Retry(TypedDict, total=False):
    """How a send retries (`SmsLease.send`'s keywords): `attempts` posts at most (3), and
    `wait(seconds)` between them, which returns False to stop (the caller was halted)."""

    attempts: int
    wait: Callable[[float], Awaitable[bool]]


class SmsClient:
    """Posts SMS to the provider; at most `max_in_flight` requests (and connections) at once."""

    def __init__(
        self,
        url: str,
        token: str,
        sender: str,
        timeout: float = 15.0,
        max_in_flight: int = 16,
        tls: ssl.SSLContext | None = None,
        status_callback: str | None = None,
        authorization: str | None = None,
    ) -> None:
        """`tls`: for an https URL, the context to verify the provider with (default: the system's
        trust store). `status_callback`: the tenant's Twilio webhook URL (README "Provider
        webhooks"); each message asks for its status there with `deliveryId=<its delivery id>`
        added, so even a send whose answer never came can be settled by its callback."""
        self._status_callback = status_callback
        self._endpoint = Endpoint.from_url(url)
        self._tls = tls
        self._head = RequestHead(
            "POST",
            self._endpoint,
            {
                # A tenant's Twilio account signs in with HTTP Basic (providers.accounts).
                "Authorization": authorization or f"Bearer {token}",
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": USER_AGENT,
            },
        )
        self._from = form_quote(sender)
        self._timeout = timeout
        self._slots = _Slots(max_in_flight)
        self._idle: list[Http1Connection] = []  # last in, first out: the freshest is reused first
        self._connections: set[Http1Connection] = set()

    def lease(self) -> "SmsLease":
        """`async with client.lease() as lease:` one connection and one in-flight slot, held
        until the block ends; `lease.send` has the signature of `SmsClient.send`."""
        return SmsLease(self)

    async def send(self, to: str, body: str, idempotency_key: str, **retry: Unpack[Retry]) -> SmsResult:
        """Post one message, retrying up to `attempts` times with one idempotency key.

        `wait(seconds)` sleeps between attempts and returns False to stop retrying (the caller
        was halted)."""
        async with SmsLease(self) as lease:
            return await lease.send(to, body, idempotency_key, **retry)

    def _request(self, to: str, body: str, key: str) -> bytes:
        # What aiohttp sends for data={"To":..,"From":..,"Body":..}: urlencode's quote_plus, in order.
        form = f"To={form_quote(to)}&From={self._from}&Body={form_quote(body)}"
        if self._status_callback:
            joiner = "&" if "?" in self._status_callback else "?"
            form += "&StatusCallback=" + form_quote(f"{self._status_callback}{joiner}deliveryId={key}")
        return self._head.build(form.encode(), (("Idempotency-Key", key),))

    async def _connect(self, deadline: float) -> Http1Connection:
        """A kept-alive connection if one is idle and fresh, else a new one (`ConnectFailed`)."""
        now = asyncio.get_running_loop().time()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable(now, IDLE_LIMIT):
                return conn
            self._discard(conn)
        conn = await Http1Connection.open(self._endpoint, max(0.0, deadline - now), self._tls)
        self._connections.add(conn)
        return conn

    def _give_back(self, conn: Http1Connection) -> None:
        if conn.closed or conn not in self._connections:  # broken, or closed by close()
            self._discard(conn)
        else:
            self._idle.append(conn)

    def _discard(self, conn: Http1Connection) -> None:
        conn.close()
        self._connections.discard(conn)

    async def close(self) -> None:
        """Close every connection, leased or idle; a later send opens new ones."""
        for conn in self._connections:
            conn.close()
        self._connections.clear()
        self._idle.clear()


class SmsLease:
    """One in-flight slot and (opened on first use, replaced when broken) one connection.

    Sends one message at a time: its retries and their waits hold the slot, so a message in
    backoff still counts as in flight."""

    def __init__(self, client: SmsClient) -> None:
        self._client = client
        self._conn: Http1Connection | None = None
        self._held = False
        self._busy = False

    async def __aenter__(self) -> "SmsLease":
        if self._held:
            raise RuntimeError("this lease is already held")
        await self._client._slots.acquire()
        self._held = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            self._client._give_back(conn)
        self._client._slots.release()

    async def send(
        self,
        to: str,
        body: str,
        idempotency_key: str,
        *,
        attempts: int = 3,
        wait: Callable[[float], Awaitable[bool]] = _sleep,
    ) -> SmsResult:
        """`SmsClient.send` on this lease's connection (the retry knobs by name only)."""
        if not self._held or self._busy:
            raise RuntimeError("a lease sends inside its `async with`, one message at a time")
        self._busy = True
        try:
            with tracing.provider_span("sms.send", {"messaging.system": "sms"}) as span:
                result = await self._send(to, body, idempotency_key, attempts, wait)
                tracing.annotate(span, **{"campaigns.verdict": result.verdict.value})
                return result
        finally:
            self._busy = False

    async def _send(
        self,
        to: str,
        body: str,
        idempotency_key: str,
        attempts: int,
        wait: Callable[[float], Awaitable[bool]],
    ) -> SmsResult:
        result = SmsResult(SmsVerdict.NOT_SENT, "not attempted")
        maybe_taken: SmsResult | None = None  # an earlier attempt the provider may have taken
        started = time.monotonic()
        failures = throttles = 0
        while True:
            result = await self._send_once(to, body, idempotency_key)
            if result.verdict in (SmsVerdict.ACCEPTED, SmsVerdict.REJECTED):
                return result
            if result.verdict == SmsVerdict.THROTTLED:
                throttles += 1
                tries = throttles
                # A message the provider may already hold cannot be released (a later send would
                # carry a new key): while the provider only throttles, keep asking with this key.
                if maybe_taken is None:
                    give_up = throttles >= attempts
                else:
                    give_up = time.monotonic() - started >= TAKEN_PATIENCE
            else:
                if result.verdict == SmsVerdict.AMBIGUOUS:
                    maybe_taken = result
                failures += 1
                tries = failures
                give_up = failures >= attempts
            if give_up or not await wait(retry_delay(tries - 1, result.retry_after)):
                break
        if maybe_taken is not None and result.verdict != SmsVerdict.AMBIGUOUS:
            # Throttled or unreachable now, but an earlier attempt may have got through.
            return replace(maybe_taken, detail=f"{maybe_taken.detail}; then {result.detail}")
        return result

    async def _send_once(self, to: str, body: str, key: str) -> SmsResult:
        client = self._client
        request = client._request(to, body, key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + client._timeout
        written = False  # request bytes went out: from here a failure may hide a taken message
        try:
            conn = await self._connection(deadline)
            try:
                written = True
                response = await conn.request(request, deadline - loop.time())
            except ClosedBeforeResponse:
                if not conn.reused:
                    raise
                # A kept-alive connection the server closed while it idled: nothing was answered,
                # so try once more at once on a new one (same key: the provider dedupes on it).
                conn = await self._connection(deadline)
                response = await conn.request(request, deadline - loop.time())
        except ConnectFailed as err:
            if written:  # the first write went out before the connection died
                return SmsResult(SmsVerdict.AMBIGUOUS, f"connection lost, then {err}")
            return SmsResult(SmsVerdict.NOT_SENT, str(err))
        except TimeoutError:
            return SmsResult(SmsVerdict.AMBIGUOUS, f"no answer within {client._timeout:g} s")
        except Http1Error as err:
            return SmsResult(SmsVerdict.AMBIGUOUS, str(err) or type(err).__name__)
        return _classify(response, key)

    async def _connection(self, deadline: float) -> Http1Connection:
        conn = self._conn
        if conn is not None:
            if conn.usable(asyncio.get_running_loop().time(), IDLE_LIMIT):
                return conn
            self._conn = None
            self._client._discard(conn)
        conn = self._conn = await self._client._connect(deadline)
        return conn


def _classify(response: Response, key: str) -> SmsResult:
    status = response.status
    text = response.text()
    if 200 <= status < 300:
        return SmsResult(SmsVerdict.ACCEPTED, "", _sid(text) or key, status=status)
    detail = f"{status} {text[:200]}"
    hint = _retry_after(response.header("Retry-After"))
    if status == 429:
        return SmsResult(SmsVerdict.THROTTLED, detail, retry_after=hint, status=status)
    if 400 <= status < 500 and status not in (408, 409):
        return SmsResult(SmsVerdict.REJECTED, detail, status=status)
    return SmsResult(SmsVerdict.AMBIGUOUS, detail, retry_after=hint, status=status)


def _sid(text: str) -> str | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    sid = data.get("sid") if isinstance(data, dict) else None
    return str(sid) if sid else None


def _retry_after(value: str | None) -> float | None:
    """A Retry-After header (delay-seconds or an HTTP-date) in seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
