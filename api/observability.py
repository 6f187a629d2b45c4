"""Per-request metrics, access log, log ids and server span for the API; and `GET /metrics`.

One pure-ASGI middleware (outermost, so 413s and 500s are counted too) times each request, labels
it by its route *template* (`/campaigns/{campaign_id}`: bounded, and free of tracking tokens), binds
a fresh log context and, when tracing is on, runs the request in a SERVER span that continues an
incoming `traceparent`. A router-level dependency fills the log context once routing knows the
route: campaignId (path), tenantId (the `tenantId` query parameter, else the token's only tenant).
"""

import logging
import time

from fastapi import Request, Response
from opentelemetry import propagate
from opentelemetry.trace import SpanKind
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import decode
from api.errors import Problem
from core import logs, metrics, tracing

log = logging.getLogger("campaigns.api.access")

UNMATCHED = "unmatched"  # 404s: one label value, whatever path was asked for
_QUIET = {"/metrics", "/health"}  # scraped and probed every few seconds: DEBUG lines only


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        status = 500
        start = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        tracer = tracing.tracer()
        with logs.bound() as ids:
            try:
                if tracer is None:
                    await self.app(scope, receive, send_with_status)
                else:
                    carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
                    with tracer.start_as_current_span(
                        method, context=propagate.extract(carrier), kind=SpanKind.SERVER
                    ) as span:
                        await self.app(scope, receive, send_with_status)
                        span.update_name(f"{method} {route_template(scope)}")
                        span.set_attribute("http.request.method", method)
                        span.set_attribute("http.route", route_template(scope))
                        span.set_attribute("http.response.status_code", status)
                        for key, value in ids.items():
                            span.set_attribute(f"campaigns.{key}", value)
            finally:
                route = route_template(scope)
                elapsed = time.perf_counter() - start
                metrics.observe_request(method, route, status, elapsed)
                log.log(
                    logging.DEBUG if route in _QUIET else logging.INFO,
                    "%s %s %d",
                    method,
                    route,
                    status,
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "durationMs": round(elapsed * 1000, 1),
                    },
                )


async def bind_route_ids(request: Request) -> None:
    """Router-level dependency: the ids of the request's campaign and tenant, for its log lines."""
    target = logs.bound_dict()
    if target is None:
        return
    campaign_id = request.path_params.get("campaign_id")
    tenant_id = request.query_params.get("tenantId") or _only_tenant(request)
    for key, value in logs.campaign_ids(campaign_id, tenant_id).items():
        target.setdefault(key, value)


def _only_tenant(request: Request) -> str | None:
    """The token's tenant when it grants exactly one (decoded again: tens of µs, for log lines)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    state = getattr(request.app.state, "campaigns", None)
    if scheme.lower() != "bearer" or not token or state is None:
        return None
    try:
        principal = decode(token.strip(), state.settings)
    except Problem:
        return None  # the route's own auth answers 401
    return next(iter(principal.tenants)) if len(principal.tenants) == 1 else None


async def metrics_endpoint() -> Response:
    """Prometheus text format; no auth (README "Security"), like /health."""
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
