"""A minimal HTTP/1.1 client connection: one request at a time on a kept-alive socket.

Why not aiohttp: on SMS campaigns its request machinery (header multidicts, URL objects, cookie
jars, tracing hooks, a stream reader per response) was ~37% of the worker's CPU for a form post
whose head is the same every time but for two headers. Here the constant part of the head is
encoded once (`RequestHead`), a request is one `transport.write`, and the answer is parsed by
httptools' C parser straight from `data_received`; no task, no stream reader per request.

What a caller has to know to classify an outcome (providers/sms.py does):
- `ConnectFailed`: the connection never opened, nothing was sent.
- `ClosedBeforeResponse`: the peer closed or reset the connection before ANY byte of the
  answer. On a connection that already served a request this is usually a server closing an
  idle keep-alive connection just as we wrote; `Http1Connection.reused` says which case it is.
- `ConnectionBroken`: the answer started but the connection broke, or the answer was not HTTP.
- `TimeoutError`: no complete answer in time; the connection is closed (it may still carry a
  late answer, so it cannot serve another request).
Only plain answers are supported: no pipelining, no upgrades, no `Expect: 100-continue` (interim
1xx answers are skipped all the same).
"""

import asyncio
import ssl
from dataclasses import dataclass
from functools import cache
from typing import cast
from urllib.parse import quote_plus, urlsplit

import httptools


class Http1Error(Exception):
    """A request that got no complete HTTP answer."""


class ConnectFailed(Http1Error):
    """The TCP (or TLS) connection could not be opened: nothing was sent."""


class ClosedBeforeResponse(Http1Error):
    """The connection closed or was reset after the request was written, before any answer byte."""


class ConnectionBroken(Http1Error):
    """The connection broke in the middle of an answer, or the answer was not valid HTTP."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where requests go: parsed once from the URL so no request parses it again."""

    host: str
    port: int
    path: str
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> "Endpoint":
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        return cls(parts.hostname, parts.port or (443 if tls else 80), path, tls)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"


def _check_header(name: str, value: str) -> None:
    # A CR or LF in a header would let a value write headers of its own (aiohttp refuses them too).
    if any(c in name or c in value for c in "\r\n") or ":" in name:
        raise ValueError(f"invalid HTTP header {name!r}: {value!r}")


class RequestHead:
    """The head of one kind of request, its constant part encoded once.

    `build(body, extra)` adds Content-Length, the per-request headers and the body, so a request
    costs one join. `extra` names are written as given; values are checked for CR/LF."""

    __slots__ = ("_prefix",)

    def __init__(self, method: str, endpoint: Endpoint, headers: dict[str, str]) -> None:
        lines = [f"{method} {endpoint.path} HTTP/1.1", f"Host: {endpoint.host_header}"]
        for name, value in headers.items():
            _check_header(name, value)
            lines.append(f"{name}: {value}")
        self._prefix = ("\r\n".join(lines) + "\r\nContent-Length: ").encode()

    def build(self, body: bytes, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
        parts = [self._prefix, str(len(body)).encode(), b"\r\n"]
        for name, value in extra:
            if "\r" in value or "\n" in value:
                _check_header(name, value)
            parts.append(f"{name}: {value}\r\n".encode())
        parts.append(b"\r\n")
        parts.append(body)
        return b"".join(parts)


@dataclass(slots=True)
class Response:
    status: int
    raw_headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first header of this name (case-insensitive), decoded as Latin-1 like HTTP says."""
        wanted = name.lower().encode()
        for key, value in self.raw_headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class _FormQuotes(dict[int, str]):
    """Code point -> its form encoding; characters not seen yet are quoted once and remembered."""

    def __missing__(self, code: int) -> str:
        quoted = quote_plus(chr(code))
        if len(self) < 4096:  # bounded: a text cannot grow the table without end
            self[code] = quoted
        return quoted


_FORM_QUOTES = _FormQuotes(
    {code: chr(code) for code in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"}
)
_FORM_QUOTES[ord(" ")] = "+"


def form_quote(value: str) -> str:
    """`urllib.parse.quote_plus(value)` (UTF-8), what urlencode and aiohttp's form posts use,
    as one C-level `str.translate`: about half the cost of quote_plus per field."""
    return value.translate(_FORM_QUOTES)


@cache
def default_tls() -> ssl.SSLContext:
    """The system's trust store, loaded once (loading it costs milliseconds per connection)."""
    return ssl.create_default_context()


class Http1Connection(asyncio.Protocol):
    """One kept-alive connection; `request` sends a pre-built request and waits for its answer.

    One request at a time: a caller that shares a connection must serialise its requests."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._answered = False  # a byte of the current answer arrived
        self._headers_done = False
        self._keep_alive = True
        self.closed = False
        # Requests answered on this connection: >0 means the next one goes over a reused socket.
        self.served = 0
        self.idle_since = self._loop.time()

    @property
    def reused(self) -> bool:
        return self.served > 0

    def usable(self, now: float, idle_limit: float) -> bool:
        """Open, and not idle so long that the server has likely closed it (or is about to)."""
        transport = self._transport
        return (
            not self.closed
            and transport is not None
            and not transport.is_closing()
            and now - self.idle_since < idle_limit
        )

    @classmethod
    async def open(
        cls, endpoint: Endpoint, timeout: float, tls: ssl.SSLContext | None = None
    ) -> "Http1Connection":
        """Connect, or raise `ConnectFailed` (refused, unreachable, TLS failure, or too slow)."""
        loop = asyncio.get_running_loop()
        context = (tls or default_tls()) if endpoint.tls else None
        try:
            async with asyncio.timeout(timeout):
                _, protocol = await loop.create_connection(
                    cls,
                    endpoint.host,
                    endpoint.port,
                    ssl=context,
                    server_hostname=endpoint.host if context else None,
                )
        except TimeoutError as err:
            raise ConnectFailed(f"connect to {endpoint.host}:{endpoint.port} timed out") from err
        except (OSError, ssl.SSLError) as err:
            raise ConnectFailed(f"cannot connect to {endpoint.host}:{endpoint.port}: {err}") from err
        return protocol

    async def request(self, data: bytes, timeout: float) -> Response:
        """Write `data` (a whole request) and return the answer, within `timeout` seconds."""
        transport = self._transport
        if self.closed or transport is None or transport.is_closing():
            raise ClosedBeforeResponse("connection already closed")
        if self._waiter is not None:
            raise RuntimeError("one request at a time on an HTTP/1.1 connection")
        waiter: asyncio.Future[Response] = self._loop.create_future()
        self._waiter = waiter
        self._answered = False
        transport.write(data)
        timer = self._loop.call_later(timeout, self._time_out, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None
            if not waiter.done() or waiter.cancelled():
                # The caller was cancelled mid-request: an answer may still come, so this
                # connection cannot carry another request.
                self.close()
            else:
                self.idle_since = self._loop.time()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def _time_out(self, waiter: "asyncio.Future[Response]") -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError("no answer in time"))
        self.close()

    def _fail(self, err: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # create_connection's stream transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # An answer nobody asked for (e.g. a 408 before an idle close): the exchange is out of
            # step, so the connection is done.
            self.close()
            return
        self._answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(ConnectionBroken(f"invalid HTTP answer: {err}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and self._ends_at_close():
            self._complete()
        elif not self._answered:
            self._fail(ClosedBeforeResponse(f"connection closed before any answer ({exc or 'EOF'})"))
        else:
            self._fail(ConnectionBroken(f"connection broke mid-answer ({exc or 'EOF'})"))

    def _ends_at_close(self) -> bool:
        """An answer with neither Content-Length nor chunked encoding ends when the peer closes."""
        for key, value in self._headers:
            name = key.lower()
            if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
                return False
        return True

    # httptools callbacks (only those defined are called)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:  # an interim answer: the real one follows
            self._headers, self._body, self._headers_done = [], [], False
            return
        self._complete()
        if not self._keep_alive:
            self.close()

    def _complete(self) -> None:
        response = Response(self._parser.get_status_code(), self._headers, b"".join(self._body))
        self._headers, self._body, self._headers_done = [], [], False
        self.served += 1
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)
        else:  # an answer nobody asked for, in the same packet as the real one
            self.close()
