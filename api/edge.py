"""Limits at the API's edge, applied before any route runs: header sizes and request rates.

One tenant (or one address) must not be able to slow the API down for everybody else, so every
request passes, in this order:

- **Header sizes.** All request headers together at most `CAMPAIGNS_MAX_HEADER_BYTES`, a single
  header at most `CAMPAIGNS_MAX_HEADER_VALUE_BYTES`; over either, a 431 problem. The ASGI check
  below sees headers only once the server has read them all, so the server must bound them while
  reading: `HttpToolsWithHeadLimit` does that for uvicorn's fast parser (httptools reads a head of
  any size, and a 50 MB header would stall the event loop for seconds). Serve with
  `uvicorn api.main:app --http api.edge:HttpToolsWithHeadLimit`; uvicorn's h11 parser has its own
  bound (`--h11-max-incomplete-event-size`, 16 KiB by default).
- **Rates**, token buckets in this process's memory (so the budgets are per API process: N
  processes behind a balancer admit up to N times as much): per tenant of a valid bearer token
  (such a request spends no address budget), per client address for every other request, and for
  the tracking links (`/t/...`, opened by mail readers and their image
  proxies, no token) per client address with a budget of their own. Over a budget: 429 with
  `Retry-After`. `/health` and `/metrics` are never limited: probes must see the API as it is.

The client address is the ASGI `client`: behind a proxy, run uvicorn with `--proxy-headers
--forwarded-allow-ips=<the proxy>` so that it is the caller's, not the proxy's.
"""

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.auth import decode
from api.errors import PROBLEM, Problem, problem_response
from core.settings import Settings, get_settings

log = logging.getLogger("campaigns.api")

UNLIMITED_PATHS = frozenset({"/health", "/metrics"})
TRACKING_PREFIX = "/t/"
# Distinct keys one bucket family remembers. A key idle long enough to be full again is forgotten
# for free (a fresh bucket is the same); past this many busy keys the least recent one goes, which
# can only be lenient to it. Bounded memory whatever number of addresses or tenants shows up.
MAX_KEYS = 100_000
# Room for the request line (method, URL, version) beside the headers in the server's bound.
REQUEST_LINE_BYTES = 8 * 1024
# How long a connection refused for its head stays open (not read) so the client can read the 431.
LINGER_SECONDS = 2.0


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets by key: `rate` tokens a second, at most `burst` saved up; O(1) per request."""

    def __init__(self, rate: float, burst: int, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self.full_after = self.burst / rate
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, keys: Iterable[str], now: float) -> float:
        """Spend one token from each key's bucket, or none when one of them is empty. Returns 0 when
        admitted, else the seconds until every bucket has a token again."""
        buckets = [self._bucket(key, now) for key in keys]
        wait = max((max(0.0, (1.0 - b.tokens) / self.rate) for b in buckets), default=0.0)
        if wait > 0:
            return wait
        for bucket in buckets:
            bucket.tokens -= 1.0
        return 0.0

    def _bucket(self, key: str, now: float) -> _Bucket:
        self._forget_idle(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            self._buckets.move_to_end(key)
        return bucket

    def _forget_idle(self, now: float) -> None:
        # Least recently used first: stop at the first bucket that is still refilling. At most two
        # a call, so one request never pays for a backlog (the rest go on later requests).
        for _ in range(2):
            oldest = next(iter(self._buckets.values()), None)
            if oldest is None or now - oldest.at < self.full_after:
                return
            self._buckets.popitem(last=False)


def _limiter(rate: float, burst: int) -> RateLimiter | None:
    return RateLimiter(rate, burst) if rate > 0 else None


class _Limiters:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ip = _limiter(settings.rate_limit_ip_per_second, settings.rate_limit_ip_burst)
        self.tenant = _limiter(settings.rate_limit_tenant_per_second, settings.rate_limit_tenant_burst)
        self.tracking = _limiter(
            settings.rate_limit_tracking_ip_per_second, settings.rate_limit_tracking_ip_burst
        )


class EdgeLimits:
    """ASGI middleware: header sizes, then the rate budgets (see the module docstring).

    The settings come from the app's state when the first request arrives (the lifespan builds
    them in production, tests pass them), so installing it is one line in `create_app`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._limiters: _Limiters | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limiters = self._limiters_for(scope)
        settings = limiters.settings
        too_large = _headers_too_large(scope, settings)
        if too_large:
            await problem_response(431, too_large)(scope, receive, send)
            return
        path: str = scope["path"]
        if path not in UNLIMITED_PATHS:
            wait = self._wait(scope, path, limiters)
            if wait > 0:
                await _too_many(wait)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _limiters_for(self, scope: Scope) -> _Limiters:
        app: Any = scope.get("app")
        state = getattr(getattr(app, "state", None), "campaigns", None)
        settings: Settings = state.settings if state is not None else get_settings()
        if self._limiters is None or self._limiters.settings is not settings:
            self._limiters = _Limiters(settings)
        return self._limiters

    def _wait(self, scope: Scope, path: str, limiters: _Limiters) -> float:
        now = time.monotonic()
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        if path.startswith(TRACKING_PREFIX):
            return limiters.tracking.take([address], now) if limiters.tracking is not None else 0.0
        # A request with a valid token is charged to its tenants only: the platform's apps send
        # many tenants' requests from one address, and a shared address budget would let one
        # tenant's flood refuse the others. Anything else (no token, a bad one) spends the
        # address's budget, so an unauthenticated flood is bounded too.
        tenants = _token_tenants(scope, limiters.settings)
        if tenants:
            return limiters.tenant.take(sorted(tenants), now) if limiters.tenant is not None else 0.0
        return limiters.ip.take([address], now) if limiters.ip is not None else 0.0


def _headers_too_large(scope: Scope, settings: Settings) -> str | None:
    total = 0
    for name, value in scope.get("headers", []):
        if len(value) > settings.max_header_value_bytes:
            return f"a request header is over {settings.max_header_value_bytes} bytes"
        total += len(name) + len(value)
    if total > settings.max_header_bytes:
        return f"the request headers are over {settings.max_header_bytes} bytes together"
    return None


def _token_tenants(scope: Scope, settings: Settings) -> frozenset[str]:
    """The tenants of a valid bearer token: each is charged for the request. An invalid token
    charges no tenant (the route answers 401; the address budget still applies), so nobody can
    spend a tenant's budget without holding one of its tokens."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return frozenset()
            try:
                return decode(token.strip(), settings).tenants
            except Problem:
                return frozenset()
    return frozenset()


def _too_many(wait: float) -> Any:
    response = problem_response(429, "too many requests: slow down and retry after the given seconds")
    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


# ---- the server side: bounded request heads with httptools --------------------------------------------


@cache
def _head_limit() -> int:
    return get_settings().max_header_bytes + REQUEST_LINE_BYTES


class HttpToolsWithHeadLimit(HttpToolsProtocol):
    """uvicorn's httptools protocol that refuses a request head (request line and headers) over
    `CAMPAIGNS_MAX_HEADER_BYTES` + 8 KiB with a 431 and closes the connection.

    httptools buffers a head of any size (a header value arriving in pieces is concatenated piece by
    piece), so without a bound one request with a 50 MB header holds the event loop for seconds. The
    count starts with the chunk after the one in which a request began (that first read is bounded
    by the transport's read size, and may hold the end of the previous request's body), so a
    pipelined large body is never mistaken for a large head.
    """

    _head_open = False
    _head_bytes = 0
    _refused = False

    def on_message_begin(self) -> None:
        self._head_open = True
        self._head_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._head_open = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        was_open = self._head_open
        super().data_received(data)
        if was_open and self._head_open:
            self._head_bytes += len(data)
            if self._head_bytes > _head_limit():
                self._refuse_head()

    def _refuse_head(self) -> None:
        self._refused = True
        body = (
            b'{"type":"https://campaigns.dev/problems/431","title":"Request Header Fields Too Large",'
            b'"status":431,"detail":"the request head is over ' + str(_head_limit()).encode() + b' bytes"}'
        )
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            + b"content-type: "
            + PROBLEM.encode()
            + b"\r\n"
            + b"content-length: "
            + str(len(body)).encode()
            + b"\r\n"
            + b"connection: close\r\n\r\n"
        )
        log.warning("refused a request head over %d bytes from %s", _head_limit(), self.client)
        # Answer, stop reading, and close a moment later: closing at once while the client is still
        # sending would reset the connection, and a reset can destroy the answer before the client
        # reads it. Paused, the rest of the head waits in socket buffers and costs nothing.
        self.transport.write(head + body)
        self.transport.pause_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
