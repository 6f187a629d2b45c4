"""OpenTelemetry tracing: API request -> Temporal workflow -> activity -> provider call.

Off unless `CAMPAIGNS_OTLP_ENDPOINT` is set (or a test enables it with its own provider). When off,
nothing is installed: no Temporal interceptor, no span in the API middleware, and `provider_span`
returns one shared no-op context manager, so the send path pays one attribute lookup per message.

Temporal's `TracingInterceptor` carries the context in workflow and activity headers. Its workflow
spans hang under the trace of the call that *started* the workflow (`POST /campaigns`), so a
campaign's sends, activities and provider calls are one trace; a later lifecycle call
(`POST .../execute`) is its own trace, which the workflow's `HandleUpdate:execute` span links to.
"""

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Tracer
from temporalio.client import Interceptor

log = logging.getLogger(__name__)

TRACER_NAME = "campaigns"
_NOOP: contextlib.nullcontext[None] = contextlib.nullcontext()

_tracer: Tracer | None = None
_provider: TracerProvider | None = None


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector base URL (a full `/v1/traces` URL is kept)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def configure(otlp_endpoint: str | None, service_name: str) -> bool:
    """Export spans over OTLP/HTTP when an endpoint is configured; True when tracing is on."""
    if not otlp_endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(otlp_endpoint))))
    trace.set_tracer_provider(provider)
    enable(provider)
    log.info("tracing to %s as %s", traces_url(otlp_endpoint), service_name)
    return True


def enable(provider: TracerProvider) -> None:
    """Trace with `provider` (production: the OTLP one; tests: one with an in-memory exporter)."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer(TRACER_NAME)


def disable() -> None:
    global _tracer, _provider
    _tracer = None
    _provider = None


def tracer() -> Tracer | None:
    return _tracer


def shutdown() -> None:
    """Flush spans still buffered (at process exit)."""
    if _provider is not None:
        _provider.shutdown()


def client_interceptors() -> list[Interceptor]:
    """Temporal client interceptors; a worker built on the client inherits them."""
    if _tracer is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(_tracer)]


def provider_span(
    name: str, attributes: Mapping[str, Any] | None = None
) -> contextlib.AbstractContextManager[Any]:
    """A CLIENT span around one provider call, or the shared no-op when tracing is off.

    Never put addresses or message bodies in `attributes`: spans leave the service.
    """
    if _tracer is None:
        return _NOOP
    return _tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=dict(attributes or {}))


def annotate(span: Span | None, **attributes: Any) -> None:
    """Set attributes on a span from `provider_span` (None when tracing is off)."""
    if span is not None:
        for key, value in attributes.items():
            span.set_attribute(key, value)
