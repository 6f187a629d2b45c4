"""Local stand-ins for the outside world, at its protocol boundary: an SMTP server and an SMS API.

Used by the development stack (to look at what was sent) and by the tests (to count it).
The SMS sink behaves like a Twilio-style provider: bearer auth, form posts, dedupe on
`Idempotency-Key` (the same key twice is one message).

Both can inject faults at the protocol boundary (the fault suite, tests/faults): SMTP 4xx
windows, 5xx for given addresses, connections dropped after a message's data; SMS 429 windows
with Retry-After, 500s for given numbers or for the first attempts of a message.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:  # the SMTP capture needs aiosmtpd (the dev extra); the SMS one does not
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class CapturedEmail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    to: str = ""  # the To header, read once at capture (header access is slow)

    def __post_init__(self) -> None:
        if not self.to:
            self.to = str(self.message["To"])

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        return "" if body is None else str(body.get_content())


@dataclass
class SmtpSink:
    """aiosmtpd in its own thread; `refuse` maps addresses to (code, message) to simulate bounces."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[CapturedEmail] = field(default_factory=list)
    # Messages per To address, kept at capture so counting never rescans every message.
    by_to: Counter[str] = field(default_factory=Counter)
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)
    # Fault injection (see `defer_window`, `drop_every`); what was injected is counted below.
    defer_answer: str = "451 4.3.0 Temporary failure, try again later"
    defer_after: int | None = None  # once this many messages are captured, defer for a while
    defer_seconds: float = 0.0
    drop_every: int = 0  # drop the connection after the data of every Nth message (0: never)
    idle_timeout: float = 300.0  # close a connection idle this long (aiosmtpd's default: 300 s)
    # False: count messages per address but keep none (a benchmark's million messages would
    # otherwise hold gigabytes and slow the sink down as it grows).
    keep: bool = True
    # Announce PIPELINING (RFC 2920), as the large relays do: aiosmtpd answers commands in the
    # order they come, so a client may send MAIL, RCPT and DATA in one write.
    pipelining: bool = True
    received: int = 0
    deferred: int = 0  # RCPTs answered with `defer_answer`
    refused: Counter[str] = field(default_factory=Counter)  # RCPTs answered from `refuse`
    dropped: list[str] = field(default_factory=list)  # recipients whose data was dropped
    # Recipients of transactions the connection ended in before the DATA answer (a drop above, a
    # server stop, an idle timeout while the client stalled): the client cannot know their fate.
    cut: list[str] = field(default_factory=list)
    _defer_until: float | None = None
    _data_seen: int = 0
    # Connections now open, and the envelope each last answered 250 (their recipients are not cut
    # when the connection ends before aiosmtpd starts the next envelope). Used in the server's loop.
    _live: set[SMTP] = field(default_factory=set)
    _answered: dict[SMTP, Envelope] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    def defer_window(self, after_messages: int, seconds: float) -> None:
        """Answer every RCPT with a 4xx for `seconds`, starting once `after_messages` are captured."""
        with self._lock:
            self.defer_after, self.defer_seconds, self._defer_until = after_messages, seconds, None

    def _deferring(self) -> bool:
        with self._lock:
            if self.defer_after is None:
                return False
            now = time.monotonic()
            if self._defer_until is None and len(self.messages) >= self.defer_after:
                self._defer_until = now + self.defer_seconds
            if self._defer_until is not None and now < self._defer_until:
                self.deferred += 1
                return True
            return False

    async def handle_EHLO(  # aiosmtpd hook name
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # (aiosmtpd leaves this to the hook once there is one)
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")  # before the last line ("250 HELP")
        return responses

    async def handle_RCPT(  # aiosmtpd hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            code, text = self.refuse[address]
            with self._lock:
                self.refused[address] += 1
            return f"{code} {text}"
        if self._deferring():
            return self.defer_answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self._data_seen += 1
            drop = bool(self.drop_every) and self._data_seen % self.drop_every == 0
            if drop:
                self.dropped.extend(envelope.rcpt_tos)
        if drop and server.transport is not None:
            # The whole message arrived but the answer never leaves: the client cannot tell
            # whether it was taken (it was not: nothing is captured).
            server.transport.close()
            await asyncio.sleep(3600)  # the connection's handler is cancelled at once
        self._answered[server] = envelope  # the answer below goes out before any other await
        if not self.keep:
            with self._lock:
                self.received += 1
                for address in envelope.rcpt_tos:
                    self.by_to[address] += 1
            return "250 Message accepted for delivery"
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        captured = CapturedEmail(str(envelope.mail_from), list(envelope.rcpt_tos), msg)
        with self._lock:
            self.messages.append(captured)
            self.received += 1
            self.by_to[captured.to] += 1
        return "250 Message accepted for delivery"

    def start(self) -> SmtpSink:
        port = self.port or _free_port()
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import SMTP

        sink = self

        class _Server(SMTP):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                sink._live.add(self)

            def connection_lost(self, error: Exception | None) -> None:
                sink._cut_if_open(self)
                sink._live.discard(self)
                sink._answered.pop(self, None)
                super().connection_lost(error)

        class _Controller(Controller):
            def factory(self) -> SMTP:
                return _Server(self.handler, **self.SMTP_kwargs)

        self._live, self._answered = set(), {}
        self._controller = _Controller(
            self, hostname=self.host, port=port, ready_timeout=10, timeout=self.idle_timeout
        )
        self._controller.start()
        self.port = port
        return self

    def _cut_if_open(self, server: SMTP) -> None:
        """Recipients accepted on `server` and no answer to their data yet: the transaction is cut
        (once: the envelope is then forgotten as if answered)."""
        envelope = server.envelope
        if envelope is None or not envelope.rcpt_tos or self._answered.get(server) is envelope:
            return
        self._answered[server] = envelope
        with self._lock:
            self.cut.extend(envelope.rcpt_tos)

    async def _cut_all_open(self) -> None:
        for server in list(self._live):
            self._cut_if_open(server)

    def stop(self) -> None:
        if self._controller is not None:
            # A stop ends the open transactions without running every connection's
            # connection_lost first: count them as cut from the server's own loop.
            loop = self._controller.loop
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self._cut_all_open(), loop).result(5)
            self._controller.stop()

    def count(self) -> int:
        with self._lock:
            return self.received

    def snapshot(self) -> list[CapturedEmail]:
        with self._lock:
            return list(self.messages)

    def counts(self, addresses: set[str]) -> Counter[str]:
        with self._lock:
            return Counter({a: self.by_to[a] for a in addresses if self.by_to.get(a)})

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.by_to.clear()
            self.received = 0

    def message_ids(self, addresses: set[str]) -> dict[str, list[str]]:
        """The Message-IDs captured per To address (of `addresses`), in arrival order."""
        found: dict[str, list[str]] = {}
        for m in self.snapshot():
            if m.to in addresses:
                found.setdefault(m.to, []).append(str(m.message["Message-ID"]))
        return found


@dataclass
class SmsMessage:
    to: str
    sender: str
    body: str
    idempotency_key: str
    sid: str


@dataclass
class SmsSink:
    """A Twilio-style SMS API on 127.0.0.1 (aiohttp), deduplicating on Idempotency-Key."""

    token: str = "dev-sms-token"
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[SmsMessage] = field(default_factory=list)
    by_key: dict[str, SmsMessage] = field(default_factory=dict)
    by_to: Counter[str] = field(default_factory=Counter)
    reject_numbers: set[str] = field(default_factory=set)
    # Numbers whose posts fail with 503 (nothing stored): a provider outage for those messages.
    unavailable_numbers: set[str] = field(default_factory=set)
    requests: int = 0
    # Requests per idempotency key: more than one means the sender retried that message.
    attempts: Counter[str] = field(default_factory=Counter)
    # Fault injection (see `throttle_window`); what was injected is counted below.
    throttle_after: int | None = None  # once this many messages are stored, answer 429 a while
    throttle_seconds: float = 0.0
    retry_after: int = 1  # the Retry-After (seconds) of a 429
    # Numbers whose first `flaky_failures` posts per key answer 500; the first of them stores the
    # message all the same (the provider took it, the answer was lost): only the key saves a double.
    flaky_numbers: set[str] = field(default_factory=set)
    flaky_failures: int = 2
    failing_numbers: set[str] = field(default_factory=set)  # every post answers 500, nothing stored
    throttled: int = 0  # 429s answered
    errors: int = 0  # 500s answered
    _throttle_until: float | None = None
    _flaky_seen: Counter[str] = field(default_factory=Counter)
    _runner: web.AppRunner | None = None

    def throttle_window(self, after_messages: int, seconds: float, retry_after: int = 1) -> None:
        """Answer 429 with `Retry-After` for `seconds`, starting once `after_messages` are stored."""
        self.throttle_after, self.throttle_seconds = after_messages, seconds
        self.retry_after, self._throttle_until = retry_after, None

    def _throttling(self) -> bool:
        if self.throttle_after is None:
            return False
        now = time.monotonic()
        if self._throttle_until is None and len(self.messages) >= self.throttle_after:
            self._throttle_until = now + self.throttle_seconds
        return self._throttle_until is not None and now < self._throttle_until

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/messages"

    async def _post(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"message": "unauthorized"}, status=401)
        form = await request.post()
        to, body = str(form.get("To", "")), str(form.get("Body", ""))
        key = request.headers.get("Idempotency-Key", "")
        if not to or not body or not key:
            return web.json_response({"message": "To, Body and Idempotency-Key are required"}, status=400)
        if to in self.unavailable_numbers:
            return web.json_response({"message": "try again later"}, status=503)
        if to in self.reject_numbers:
            return web.json_response({"message": "invalid destination"}, status=400)
        self.attempts[key] += 1
        if self._throttling():
            self.throttled += 1
            headers = {"Retry-After": str(self.retry_after)}
            return web.json_response({"message": "too many requests"}, status=429, headers=headers)
        if to in self.failing_numbers:
            self.errors += 1
            return web.json_response({"message": "internal error"}, status=500)
        if to in self.flaky_numbers and self._flaky_seen[key] < self.flaky_failures:
            self._flaky_seen[key] += 1
            self.errors += 1
            if key not in self.by_key:
                self._store(to, str(form.get("From", "")), body, key)
            return web.json_response({"message": "internal error"}, status=500)
        existing = self.by_key.get(key)
        if existing is not None:
            return web.json_response({"sid": existing.sid, "status": "queued"}, status=201)
        msg = self._store(to, str(form.get("From", "")), body, key)
        return web.json_response({"sid": msg.sid, "status": "queued"}, status=201)

    def _store(self, to: str, sender: str, body: str, key: str) -> SmsMessage:
        msg = SmsMessage(to, sender, body, key, "SM" + secrets.token_hex(16))
        self.by_key[key] = msg
        self.messages.append(msg)
        self.by_to[to] += 1
        return msg

    async def _list(self, _: web.Request) -> web.Response:
        data: list[dict[str, Any]] = [m.__dict__ for m in self.messages[-200:]]
        return web.json_response({"count": len(self.messages), "latest": data})

    async def start(self) -> SmsSink:
        app = web.Application()
        app.router.add_post("/messages", self._post)
        app.router.add_get("/messages", self._list)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = self.port or _free_port()
        await web.TCPSite(self._runner, self.host, port).start()
        self.port = port
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def count(self) -> int:
        return len(self.messages)

    def counts(self, numbers: set[str]) -> Counter[str]:
        return Counter({n: self.by_to[n] for n in numbers if self.by_to.get(n)})

    def clear(self) -> None:
        self.messages.clear()
        self.by_key.clear()
        self.by_to.clear()
        self.attempts.clear()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
