"""The lean SMS HTTP/1.1 client (providers/http1.py, providers/sms.py) over real sockets.

Against the real SMS sink for what a provider stores, and against a tiny scripted server for the
edges the sink never shows: chunked and close-delimited answers, `Connection: close`, a server
closing a kept-alive connection just as we reuse it, hangs, resets and refused connects."""

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from time import time
from urllib.parse import quote_plus, urlencode

import pytest

from devstack.sinks import SmsSink
from providers.http1 import Endpoint, RequestHead, form_quote
from providers.sms import SmsClient, SmsVerdict

SENDER = "+15550000000"
TOKEN = "tok"
CREATED = b'{"sid": "SM1", "status": "queued"}'


def answer(status: int = 201, body: bytes = CREATED, headers: str = "") -> bytes:
    reason = {201: "Created", 429: "Too Many Requests", 500: "Internal Server Error"}.get(status, "X")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    ).encode() + body


@dataclass
class Request:
    conn: int  # which connection (0, 1, ...) carried it
    nth: int  # its position on that connection (0: first)
    head: dict[str, str]
    body: bytes


# What the scripted server does with a request: bytes to answer (and keep the connection), or
# None to close the connection without a byte; it may sleep first.
Script = Callable[[Request], Awaitable[bytes | None]]


async def created(_: Request) -> bytes | None:
    return answer()


@dataclass
class RawServer:
    """A tiny HTTP server on a real socket whose answers a test scripts request by request."""

    script: Script = created
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    closed_by_client: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    close_after: bool = False  # set by a script: close the connection once its answer is written
    late: bytes = b""  # set by a script: written 20 ms after its answer
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self, tls: ssl.SSLContext | None = None) -> "RawServer":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in self._handlers:
            if task is not asyncio.current_task():
                task.cancel()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/messages"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn, self.connections = self.connections, self.connections + 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        nth = 0
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.closed_by_client += 1
                    return
                lines = raw.decode("latin-1").split("\r\n")
                head = {"request-line": lines[0]}
                head |= {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                request = Request(conn, nth, head, await reader.readexactly(int(head["content-length"])))
                self.requests.append(request)
                nth += 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    data = await self.script(request)
                finally:
                    self.in_flight -= 1
                if data is None:
                    return
                writer.write(data)
                await writer.drain()
                if self.late:
                    await asyncio.sleep(0.02)
                    writer.write(self.late)
                    self.late = b""
                if self.close_after:
                    self.close_after = False
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._handlers.discard(task)
            writer.close()


@pytest.fixture
async def raw() -> AsyncIterator[RawServer]:
    server = await RawServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def sink() -> AsyncIterator[SmsSink]:
    server = await SmsSink(token=TOKEN).start()
    yield server
    await server.stop()


async def no_wait(_: float) -> bool:
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# Against the real sink


async def test_unicode_texts_round_trip_through_the_sink(sink: SmsSink) -> None:
    texts = {
        "+447700900001": "Hi Zoë, your €5 voucher: é è ù ì ò Ç Ø å Δ Φ Γ Λ Ω ¿¡ £ ¥ ~ ^ {} [] \\ |",
        "+447700900002": "Привет! 你好 こんにちは مرحبا",
        "+447700900003": "Party 🎉👍🏽 tonight",
        "+447700900004": "a&b=c+d%20e f?g#h;i/j\nsecond line\r\nthird\ttab '\"",
    }
    client = SmsClient(sink.url, TOKEN, SENDER)
    try:
        results = {to: await client.send(to, text, f"key-{to}") for to, text in texts.items()}
    finally:
        await client.close()
    for to, text in texts.items():
        stored = sink.by_key[f"key-{to}"]
        assert (stored.to, stored.sender, stored.body) == (to, SENDER, text)
        assert results[to].verdict == SmsVerdict.ACCEPTED and results[to].message_id == stored.sid
        assert results[to].status == 201


async def test_the_sink_answers_are_classified(sink: SmsSink) -> None:
    sink.reject_numbers, sink.unavailable_numbers = {"+1000"}, {"+2000"}
    client = SmsClient(sink.url, TOKEN, SENDER)
    wrong = SmsClient(sink.url, "wrong-token", SENDER)
    try:
        rejected = await client.send("+1000", "hi", "k1", wait=no_wait)
        assert rejected.verdict == SmsVerdict.REJECTED and rejected.status == 400
        assert "invalid destination" in rejected.detail
        unavailable = await client.send("+2000", "hi", "k2", attempts=2, wait=no_wait)
        assert unavailable.verdict == SmsVerdict.AMBIGUOUS and unavailable.status == 503
        unauthorised = await wrong.send("+3000", "hi", "k3", wait=no_wait)
        assert unauthorised.verdict == SmsVerdict.REJECTED and unauthorised.status == 401
        assert sink.count() == 0 and sink.requests == 4  # 1 + 2 attempts + 1
    finally:
        await client.close()
        await wrong.close()


async def test_many_concurrent_sends_are_each_one_message(sink: SmsSink) -> None:
    client = SmsClient(sink.url, TOKEN, SENDER, max_in_flight=4)
    try:
        results = await asyncio.gather(*(client.send(f"+44{i}", f"m{i}", f"k{i}") for i in range(200)))
    finally:
        await client.close()
    assert all(r.verdict == SmsVerdict.ACCEPTED for r in results)
    assert sink.count() == 200 and sink.requests == 200
    assert {r.message_id for r in results} == {m.sid for m in sink.messages}


# Against the scripted server: the request on the wire


async def test_the_request_is_the_form_post_aiohttp_would_send(raw: RawServer) -> None:
    client = SmsClient(raw.url, TOKEN, SENDER)
    text = "Zoë & co: 50% off + free 🎉 = yes"
    try:
        result = await client.send("+447700900001", text, "delivery_00ff")
    finally:
        await client.close()
    assert result.verdict == SmsVerdict.ACCEPTED and result.message_id == "SM1"
    [request] = raw.requests
    assert request.body == urlencode({"To": "+447700900001", "From": SENDER, "Body": text}).encode()
    assert request.head["request-line"] == "POST /messages HTTP/1.1"
    assert request.head["host"] == f"127.0.0.1:{raw.port}"
    assert request.head["authorization"] == f"Bearer {TOKEN}"
    assert request.head["content-type"] == "application/x-www-form-urlencoded"
    assert request.head["content-length"] == str(len(request.body))
    assert request.head["idempotency-key"] == "delivery_00ff"


def test_form_quote_is_quote_plus_for_every_character() -> None:
    every = [chr(c) for c in range(0x30000) if not 0xD800 <= c < 0xE000]  # all but lone surrogates
    assert [form_quote(ch) for ch in every] == [quote_plus(ch) for ch in every]
    text = "".join(every[::97])
    assert form_quote(text) == quote_plus(text) and form_quote("") == ""


def test_request_heads_refuse_header_injection() -> None:
    head = RequestHead("POST", Endpoint.from_url("https://sms.example.com/v1/m?x=1"), {"A": "b"})
    assert head.build(b"x=1", (("K", "v"),)).startswith(
        b"POST /v1/m?x=1 HTTP/1.1\r\nHost: sms.example.com\r\nA: b\r\nContent-Length: 3\r\nK: v\r\n\r\n"
    )
    with pytest.raises(ValueError):
        head.build(b"", (("Idempotency-Key", "k\r\nX-Evil: 1"),))
    with pytest.raises(ValueError):
        RequestHead("POST", Endpoint.from_url("http://h/"), {"Authorization": "Bearer t\nX: y"})
    with pytest.raises(ValueError):
        Endpoint.from_url("ftp://h/")


async def test_https_with_a_given_trust_store(certificate: tuple[Path, Path]) -> None:
    key, cert = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server = await RawServer().start(server_tls)
    url = f"https://127.0.0.1:{server.port}/messages"
    trusting = SmsClient(url, TOKEN, SENDER, tls=ssl.create_default_context(cafile=str(cert)))
    untrusting = SmsClient(url, TOKEN, SENDER)  # the system's trust store does not know this server
    try:
        for i in range(2):
            assert (await trusting.send(f"+{i}", "héllo", f"k{i}")).verdict == SmsVerdict.ACCEPTED
        refused = await untrusting.send("+9", "hi", "k9", attempts=1)
    finally:
        await trusting.close()
        await untrusting.close()
        await server.stop()
    assert refused.verdict == SmsVerdict.NOT_SENT and "CERTIFICATE_VERIFY_FAILED" in refused.detail
    assert [(r.conn, r.body) for r in server.requests] == [
        (0, f"To=%2B{i}&From=%2B15550000000&Body=h%C3%A9llo".encode()) for i in range(2)
    ]


# Connections: reuse, limits, leases


async def test_connections_are_kept_alive_and_bounded_by_max_in_flight(raw: RawServer) -> None:
    async def slow(_: Request) -> bytes:
        await asyncio.sleep(0.01)
        return answer()

    raw.script = slow
    client = SmsClient(raw.url, TOKEN, SENDER, max_in_flight=3)
    try:
        results = await asyncio.gather(*(client.send(f"+{i}", "hi", f"k{i}") for i in range(30)))
    finally:
        await client.close()
    assert all(r.verdict == SmsVerdict.ACCEPTED for r in results)
    assert raw.max_in_flight == 3 and raw.connections == 3 and len(raw.requests) == 30


async def test_a_lease_holds_one_connection_and_one_slot(raw: RawServer) -> None:
    client = SmsClient(raw.url, TOKEN, SENDER, max_in_flight=1)
    order: list[str] = []

    async def outsider() -> None:
        await client.send("+9", "hi", "outsider")
        order.append("outsider")

    try:
        async with client.lease() as lease:
            waiting = asyncio.create_task(outsider())
            for i in range(5):
                assert (await lease.send(f"+{i}", "hi", f"k{i}")).verdict == SmsVerdict.ACCEPTED
            await asyncio.sleep(0.05)
            assert not waiting.done()  # the only slot is leased
            order.append("lease done")
        await waiting
    finally:
        await client.close()
    assert order == ["lease done", "outsider"]
    assert {r.conn for r in raw.requests} == {0} and raw.connections == 1  # the lease's connection is reused
    assert [r.nth for r in raw.requests] == list(range(6))


async def test_a_lease_sends_one_message_at_a_time_and_only_while_held(raw: RawServer) -> None:
    client = SmsClient(raw.url, TOKEN, SENDER)
    lease = client.lease()
    try:
        with pytest.raises(RuntimeError):
            await lease.send("+1", "hi", "k1")
        async with lease:
            first = asyncio.create_task(lease.send("+1", "hi", "k1"))
            await asyncio.sleep(0)
            with pytest.raises(RuntimeError):
                await lease.send("+2", "hi", "k2")
            assert (await first).verdict == SmsVerdict.ACCEPTED
    finally:
        await client.close()


async def test_waiters_get_slots_in_order(raw: RawServer) -> None:
    client = SmsClient(raw.url, TOKEN, SENDER, max_in_flight=1)
    served: list[int] = []

    async def one(i: int) -> None:
        async with client.lease() as lease:
            served.append(i)
            await lease.send(f"+{i}", "hi", f"k{i}")

    try:
        await asyncio.gather(*(one(i) for i in range(8)))
    finally:
        await client.close()
    assert served == list(range(8))


async def test_a_cancelled_send_frees_its_slot_and_drops_its_connection(raw: RawServer) -> None:
    async def hang_first(request: Request) -> bytes | None:
        if request.body.startswith(b"To=%2B1&"):
            await asyncio.sleep(10)
        return answer()

    raw.script = hang_first
    client = SmsClient(raw.url, TOKEN, SENDER, max_in_flight=1)
    try:
        stuck = asyncio.create_task(client.send("+1", "hi", "k1"))
        await asyncio.sleep(0.05)
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        result = await asyncio.wait_for(client.send("+2", "hi", "k2"), 2)
    finally:
        await client.close()
    assert result.verdict == SmsVerdict.ACCEPTED
    assert [r.conn for r in raw.requests] == [0, 1]  # the cancelled exchange's socket is not reused


async def test_close_closes_connections_and_the_client_still_sends_after(raw: RawServer) -> None:
    client = SmsClient(raw.url, TOKEN, SENDER)
    try:
        await client.send("+1", "hi", "k1")
        await client.close()
        await asyncio.sleep(0.05)
        assert raw.closed_by_client == 1
        assert (await client.send("+2", "hi", "k2")).verdict == SmsVerdict.ACCEPTED
    finally:
        await client.close()
    assert raw.connections == 2


# Answer framings


async def test_chunked_close_delimited_and_interim_answers(raw: RawServer) -> None:
    sid = b'{"sid": "SMchunked"}'
    framings = [
        (
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(sid[i : i + 5]), sid[i : i + 5]) for i in range(0, len(sid), 5))
            + b"0\r\n\r\n"
        ),
        b"HTTP/1.1 100 Continue\r\n\r\n" + answer(body=sid),
        b"HTTP/1.1 201 Created\r\nConnection: close\r\n\r\n" + sid,  # ends when the server closes
    ]

    async def next_framing(request: Request) -> bytes | None:
        raw.close_after = request.nth == 2  # the close-delimited answer ends when the server closes
        return framings[request.nth]

    raw.script = next_framing
    client = SmsClient(raw.url, TOKEN, SENDER, max_in_flight=1)
    try:
        for i in range(len(framings)):
            result = await asyncio.wait_for(client.send(f"+{i}", "hi", f"k{i}", attempts=1), 2)
            assert (result.verdict, result.message_id) == (SmsVerdict.ACCEPTED, "SMchunked"), result
    finally:
        await client.close()
    assert [r.conn for r in raw.requests] == [0, 0, 0]


async def test_a_connection_close_answer_is_not_reused(raw: RawServer) -> None:
    async def closing(_: Request) -> bytes:
        return answer(headers="Connection: close\r\n")

    raw.script = closing
    client = SmsClient(raw.url, TOKEN, SENDER, max_in_flight=1)
    try:
        for i in range(3):
            assert (await client.send(f"+{i}", "hi", f"k{i}", attempts=1)).verdict == SmsVerdict.ACCEPTED
    finally:
        await client.close()
    assert [r.conn for r in raw.requests] == [0, 1, 2]


async def test_retry_after_as_an_http_date(raw: RawServer) -> None:
    async def throttle(_: Request) -> bytes:
        return answer(429, b"{}", f"Retry-After: {formatdate(time() + 20, usegmt=True)}\r\n")

    raw.script = throttle
    client = SmsClient(raw.url, TOKEN, SENDER)
    try:
        result = await client.send("+1", "hi", "k1", attempts=1)
    finally:
        await client.close()
    assert result.verdict == SmsVerdict.THROTTLED and result.status == 429
    assert result.retry_after is not None and 18 <= result.retry_after <= 20


# Broken connections: what may have reached the provider


async def test_a_reused_connection_closed_while_idle_is_retried_at_once_on_a_new_one(raw: RawServer) -> None:
    async def close_second_on_first_conn(request: Request) -> bytes | None:
        return None if (request.conn, request.nth) == (0, 1) else answer()

    raw.script = close_second_on_first_conn
    client = SmsClient(raw.url, TOKEN, SENDER, max_in_flight=1)
    try:
        assert (await client.send("+1", "hi", "k1", attempts=1)).verdict == SmsVerdict.ACCEPTED
        # attempts=1: no retry loop, only the at-once retry of a stale keep-alive connection.
        assert (await client.send("+2", "hi", "k2", attempts=1)).verdict == SmsVerdict.ACCEPTED
    finally:
        await client.close()
    assert [(r.conn, r.head["idempotency-key"]) for r in raw.requests] == [(0, "k1"), (0, "k2"), (1, "k2")]


async def test_a_new_connection_closed_before_an_answer_is_ambiguous(raw: RawServer) -> None:
    async def drop(_: Request) -> bytes | None:
        return None

    raw.script = drop
    client = SmsClient(raw.url, TOKEN, SENDER)
    try:
        result = await client.send("+1", "hi", "k1", attempts=1)
    finally:
        await client.close()
    assert result.verdict == SmsVerdict.AMBIGUOUS and result.status is None
    assert len(raw.requests) == 1  # a fresh connection is not retried at once


async def test_a_stale_connection_then_a_refused_reconnect_is_ambiguous(raw: RawServer) -> None:
    async def vanish_on_second(request: Request) -> bytes | None:
        if request.nth == 1:
            await raw.stop()  # the provider goes away with our second request in its hands
            return None
        return answer()

    raw.script = vanish_on_second
    client = SmsClient(raw.url, TOKEN, SENDER)
    try:
        await client.send("+1", "hi", "k1", attempts=1)
        result = await client.send("+2", "hi", "k2", attempts=1)
    finally:
        await client.close()
    assert result.verdict == SmsVerdict.AMBIGUOUS and "connection lost, then cannot connect" in result.detail
    assert [(r.conn, r.head["idempotency-key"]) for r in raw.requests] == [(0, "k1"), (0, "k2")]


@pytest.mark.parametrize(
    "reply",
    [
        b'HTTP/1.1 201 Created\r\nContent-Length: 50\r\n\r\n{"sid"',
        b"HTTP/1.1 201 Cre",
        b"SMTP 220 hello\r\n\r\n",
    ],
    ids=["short-body", "short-head", "not-http"],
)
async def test_a_broken_answer_is_ambiguous(raw: RawServer, reply: bytes) -> None:
    async def broken(request: Request) -> bytes | None:
        raw.close_after = True
        return reply

    raw.script = broken
    client = SmsClient(raw.url, TOKEN, SENDER, timeout=2)
    try:
        result = await asyncio.wait_for(client.send("+1", "hi", "k1", attempts=1), 1)
    finally:
        await client.close()
    assert result.verdict == SmsVerdict.AMBIGUOUS and result.status is None, result


async def test_a_hanging_provider_times_out_as_ambiguous(raw: RawServer) -> None:
    async def hang(_: Request) -> bytes:
        await asyncio.sleep(10)
        return answer()

    raw.script = hang
    client = SmsClient(raw.url, TOKEN, SENDER, timeout=0.2)
    try:
        result = await client.send("+1", "hi", "k1", attempts=2, wait=no_wait)
    finally:
        await client.close()
    assert result.verdict == SmsVerdict.AMBIGUOUS and "0.2 s" in result.detail
    assert [r.head["idempotency-key"] for r in raw.requests] == ["k1", "k1"]
    assert [r.conn for r in raw.requests] == [0, 1]  # a timed-out connection is never reused


async def test_a_refused_connect_is_not_sent() -> None:
    client = SmsClient(f"http://127.0.0.1:{free_port()}/messages", TOKEN, SENDER)
    try:
        result = await client.send("+1", "hi", "k1", attempts=2, wait=no_wait)
    finally:
        await client.close()
    assert result.verdict == SmsVerdict.NOT_SENT and "cannot connect" in result.detail


@pytest.mark.parametrize("later", [False, True], ids=["same-packet", "while-idle"])
async def test_an_unasked_answer_drops_the_connection(raw: RawServer, later: bool) -> None:
    async def then_nag(request: Request) -> bytes:
        # The real answer, then a stray 408 of the kind servers send before closing idle sockets.
        nag = answer(408, b"") if request.nth == 0 else b""
        if later:
            raw.late = nag
            return answer()
        return answer() + nag

    raw.script = then_nag
    client = SmsClient(raw.url, TOKEN, SENDER, max_in_flight=1)
    try:
        assert (await client.send("+1", "hi", "k1", attempts=1)).verdict == SmsVerdict.ACCEPTED
        await asyncio.sleep(0.05)
        assert (await client.send("+2", "hi", "k2", attempts=1)).verdict == SmsVerdict.ACCEPTED
    finally:
        await client.close()
    assert [r.conn for r in raw.requests] == [0, 1]
