"""Operations (issue 9): metrics of API and worker, JSON logs with the campaign's ids, tracing.

Each test runs a real campaign on the real stack (Temporal dev server, worker, Postgres, sinks)
and reads what an operator would: the `/metrics` text, the log lines, the exported spans.
"""

import asyncio
import dataclasses
import io
import json
import logging
import re
import sys
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.deps import ActivityDeps
from api.deps import AppState
from api.lifecycle import CampaignControl
from api.main import create_app
from core import logs, metrics, tracing
from core.constants import campaign_workflow_id
from core.settings import Settings
from core.temporal import connect
from devstack.sinks import SmsSink
from tests.conftest import Stack, StackFactory
from tests.factories import Audience, make_audience, make_templates
from tests.helpers import create_campaign, wait_for
from worker import build_worker, start_metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "campaigns-dashboard.json"


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def run_campaign(stack: Stack, n: int = 4) -> tuple[str, Audience]:
    audience = await make_audience(stack.engine, stack.tenant, n)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t)
    r = await stack.call("POST", f"/campaigns/{cid}/execute")
    assert r.status_code == 200, r.text
    await wait_for(stack, cid, "COMPLETED")
    return cid, audience


# ---- metrics ---------------------------------------------------------------------------------


HttpKey = tuple[str, str, str]  # (method, route template, status)


def http_counts(found: Samples, name: str) -> Counter[HttpKey]:
    """One HTTP series by (method, route, status), without the scrapes of /metrics themselves."""
    counts: Counter[HttpKey] = Counter()
    for (sample, labels), n in found.items():
        if sample == name:
            d = dict(labels)
            if d["route"] != "/metrics":
                counts[(d["method"], d["route"], d["status"])] += int(n)
    return counts


async def test_api_metrics_count_requests_by_route_template_and_status(make_stack: StackFactory) -> None:
    """The registry is process-global (earlier tests' requests are in it), so the test compares
    two scrapes: the difference must be exactly the requests this test made, each under its route
    template and status."""
    stack = await make_stack()
    made: Counter[tuple[str, str, str]] = Counter()  # (method, raw path, status) of every call

    async def count(response: httpx.Response) -> None:
        made[(response.request.method, response.request.url.path, str(response.status_code))] += 1

    before = samples((await stack.api.get("/metrics")).text)
    stack.api.event_hooks["response"].append(count)
    cid, _ = await run_campaign(stack)
    assert (await stack.call("GET", "/no/such/path")).status_code == 404
    stack.api.event_hooks["response"].remove(count)

    r = await stack.api.get("/metrics")  # no token: like /health
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    found = samples(r.text)

    def template(path: str) -> str:
        return "unmatched" if path == "/no/such/path" else path.replace(cid, "{campaign_id}")

    expected: Counter[HttpKey] = Counter()
    for (method, path, status), n in made.items():
        expected[(method, template(path), status)] += n
    polls = expected[("GET", "/campaigns/{campaign_id}", "200")]
    assert polls >= 1 and expected == Counter(
        {
            ("POST", "/campaigns", "201"): 1,
            ("POST", "/campaigns/{campaign_id}/execute", "200"): 1,
            ("GET", "/campaigns/{campaign_id}", "200"): polls,
            ("GET", "unmatched", "404"): 1,
        }
    )
    for name in ("campaigns_http_requests_total", "campaigns_http_request_duration_seconds_count"):
        delta = http_counts(found, name)
        delta.subtract(http_counts(before, name))
        assert +delta == expected, (name, +delta, expected)
    execute = {"method": "POST", "route": "/campaigns/{campaign_id}/execute", "status": "200"}
    duration = "campaigns_http_request_duration_seconds_sum"
    assert value(found, duration, **execute) > value(before, duration, **execute)
    routes = {dict(labels).get("route", "") for name, labels in found if name.startswith("campaigns_http")}
    assert not any(cid in route for route in routes), "raw ids must never become label values"


async def page_attempts(client: Client, campaign_id: str) -> list[int]:
    """The attempt each send_batch activity of the campaign's (single) run completed on."""
    history = await client.get_workflow_handle(campaign_workflow_id(campaign_id)).fetch_history()
    pages = {
        e.event_id
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "send_batch"
    }
    return [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.scheduled_event_id in pages
    ]


async def test_worker_metrics_serve_messages_batches_retries_and_the_sdks_own(
    make_stack: StackFactory,
) -> None:
    """The SMS provider is down for the first attempt of the page (a retry), and refuses one
    number for good (a failed message)."""
    sms_port = metrics.free_port()
    stack = await make_stack(
        worker=False,
        sms_url=f"http://127.0.0.1:{sms_port}/messages",
        worker_metrics_port=metrics.free_port(),
    )
    runtime, server = start_metrics(stack.settings)
    assert runtime is not None and server is not None
    client = await connect(stack.settings, runtime=runtime)
    deps = ActivityDeps.build(stack.settings, stack.engine)
    worker = build_worker(client, stack.settings, deps)
    task = asyncio.create_task(worker.run())
    sms = SmsSink(port=sms_port)
    before = samples(scrape(server.port))
    try:
        audience = await make_audience(stack.engine, stack.tenant, 5)
        refused = str(audience.customers[0]["phone"])
        sms.reject_numbers.add(refused)
        email_t, sms_t = await make_templates(stack.engine, stack.tenant)
        cid = await create_campaign(stack, audience, email_t, sms_t)
        assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
        await until_retried(client, cid)
        await sms.start()  # the provider is back: the retried page sends the rest
        await wait_for(stack, cid, "COMPLETED")
        # The read model says COMPLETED a moment before the workflow closes (and counts it).
        await client.get_workflow_handle(f"campaign-{cid}").result()
        text = scrape(server.port)
        attempts = await page_attempts(client, cid)
    finally:
        await worker.shutdown()
        task.cancel()
        await deps.close()
        await sms.stop()
        server.stop()

    found = samples(text)
    tenant = stack.tenant
    assert value(found, "campaigns_messages_sent_total", channel="EMAIL", tenant=tenant) == 5
    assert value(found, "campaigns_messages_sent_total", channel="SMS", tenant=tenant) == 4
    failed = {"channel": "SMS", "tenant": tenant, "outcome": "FAILED"}
    assert value(found, "campaigns_messages_failed_total", **failed) == 1
    # Deltas, not totals (the registry is the process's): every attempt of this campaign's pages
    # is one observed batch, and every attempt after the first is one retry.
    batches = value(found, "campaigns_batch_duration_seconds_count", activity="send_batch")
    batches -= value(before, "campaigns_batch_duration_seconds_count", activity="send_batch")
    retries = value(found, "campaigns_activity_retries_total", activity="send_batch")
    retries -= value(before, "campaigns_activity_retries_total", activity="send_batch")
    assert max(attempts) >= 2, attempts  # the page was retried: the case under test happened
    assert batches == sum(attempts) and retries == sum(a - 1 for a in attempts), (batches, retries, attempts)
    # The Temporal SDK's own series, through the same endpoint.
    names = {name for name, _ in found}
    assert any(name.startswith("temporal_activity_execution_latency") for name in names), sorted(names)[:50]
    assert any(name.startswith("temporal_workflow_completed") for name in names)
    # The sample dashboard charts only series that a real worker and API expose.
    assert dashboard_series() <= names, sorted(dashboard_series() - names)


def dashboard_series() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    return {m for expr in exprs for m in re.findall(r"\b(?:campaigns|temporal)_[a-z_]+", expr)}


def test_prometheus_and_grafana_files_match_the_compose_services() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    worker_port = compose["x-campaigns-env"]["CAMPAIGNS_WORKER_METRICS_PORT"]
    assert f"{worker_port}:{worker_port}" in services["worker"]["ports"]
    Settings(worker_metrics_port=worker_port)
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {"api:8000", f"worker:{worker_port}"}
    for service in ("prometheus", "grafana"):
        for volume in services[service]["volumes"]:
            assert (ROOT / volume.split(":")[0]).exists(), volume
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "campaigns-service" and len(dashboard_series()) >= 10


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
    return text


async def until_retried(client: Client, campaign_id: str, timeout: float = 60) -> None:
    """Until Temporal has scheduled a second attempt of the campaign's send page."""
    handle = client.get_workflow_handle(campaign_workflow_id(campaign_id))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pending = (await handle.describe()).raw_description.pending_activities
        if any(p.activity_type.name == "send_batch" and p.attempt >= 2 for p in pending):
            return
        assert loop.time() < deadline, f"the page was never retried: {pending}"
        await asyncio.sleep(0.1)


# ---- logs ------------------------------------------------------------------------------------


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line of the process, formatted as production formats it (JSON)."""
    stream = io.StringIO()
    handler = logs.handler("json", stream)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    activity_log = logging.getLogger("campaigns.activity")
    saved = root.level, activity_log.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    activity_log.setLevel(logging.DEBUG)  # also the lifecycle activities' lines
    yield stream
    root.removeHandler(handler)
    root.setLevel(saved[0])
    activity_log.setLevel(saved[1])


async def test_logs_are_json_lines_with_the_campaigns_ids(
    make_stack: StackFactory, captured_logs: io.StringIO
) -> None:
    stack = await make_stack()
    audience = await make_audience(stack.engine, stack.tenant, 4)
    cid = await create_campaign(stack, audience, *await make_templates(stack.engine, stack.tenant))
    # An operator's illegal signal: the workflow logs (and ignores) it through workflow.logger.
    await stack.client.get_workflow_handle(campaign_workflow_id(cid)).signal("resume")
    await until_logged(captured_logs, "ignored resume signal")
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED")
    assert (await stack.call("GET", f"/campaigns/{cid}")).status_code == 200

    text = captured_logs.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    ours = [line for line in lines if line.get("campaignId") == cid]
    assert ours, "no line names the campaign"
    for line in ours:
        assert line.get("tenantId") == stack.tenant, line
        assert line["workflowId"] == campaign_workflow_id(cid), line

    api = [line for line in ours if line["logger"] == "campaigns.api.access"]
    assert {(line["method"], line["route"], line["status"]) for line in api} >= {
        ("POST", "/campaigns/{campaign_id}/execute", 200),
        ("GET", "/campaigns/{campaign_id}", 200),
    }
    workflow_lines = [line for line in ours if line["logger"] == "temporalio.workflow"]
    assert workflow_lines and all(line["runId"] for line in workflow_lines)
    activities = [line for line in ours if line["logger"] == "campaigns.activity"]
    assert {line["activity"] for line in activities} >= {"send_batch", "snapshot_audience", "sync_campaign"}
    assert all(line["runId"] for line in activities)
    page = next(line for line in activities if line["activity"] == "send_batch" and line.get("recipients"))
    assert page["sent"] == 2 * len(audience.customers) and page["durationMs"] > 0  # EMAIL + SMS

    # No personal data: not one address of the audience appears anywhere in the logs.
    for customer in audience.customers:
        assert customer["email"] not in text and str(customer["phone"]) not in text


async def test_a_signal_in_the_workflows_first_task_logs_the_campaigns_ids(
    make_stack: StackFactory, captured_logs: io.StringIO
) -> None:
    """Temporal hands a signal that came with the start to its handler before the workflow's main
    method runs: the handler's lines must carry the tenant all the same (from the start's memo)."""
    stack = await make_stack(worker=False)  # no worker yet: start and signal arrive in one task
    audience = await make_audience(stack.engine, stack.tenant, 2)
    cid = await create_campaign(stack, audience, *await make_templates(stack.engine, stack.tenant))
    await stack.client.get_workflow_handle(campaign_workflow_id(cid)).signal("resume")
    deps = ActivityDeps.build(stack.settings, stack.engine)
    async with build_worker(stack.client, stack.settings, deps):
        await until_logged(captured_logs, "ignored resume signal")
        lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
        ignored = [line for line in lines if "ignored resume signal" in line["message"]]
        assert [(line.get("campaignId"), line.get("tenantId")) for line in ignored] == [
            (cid, stack.tenant)
        ], ignored
    await deps.close()


async def until_logged(stream: io.StringIO, text: str, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in stream.getvalue():
        assert loop.time() < deadline, f"never logged: {text}"
        await asyncio.sleep(0.05)


def test_mask_hides_addresses_phone_numbers_and_secrets() -> None:
    line = (
        "to jane.doe+promo@example.co.uk and +447700900123, header Bearer abc.def-ghi, "
        "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl, "
        "db postgresql://app:s3cret@db:5432/campaigns, at 2024-03-01T10:00:00Z took 1234567 us"
    )
    masked = logs.mask(line)
    for secret in ("jane.doe", "447700900", "abc.def-ghi", "eyJzdWIi", "s3cret"):
        assert secret not in masked, masked
    assert "j***@example.co.uk" in masked and "+***23" in masked and "Bearer ***" in masked
    assert "postgresql://app:***@db:5432/campaigns" in masked
    assert "2024-03-01T10:00:00Z took 1234567 us" in masked  # numbers that are not phones stay


def test_formatters_mask_messages_extras_and_exceptions() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "send to %s failed", ("a@b.example",), None)
    record.detail = "+15550100001 refused"
    try:
        raise RuntimeError("boom for ann@example.com")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    with logs.bound(campaignId="campaign_1", tenantId="tenant_1"):
        line = json.loads(logs.JsonFormatter().format(record))
        text = logs.TextFormatter().format(record)
    assert line["message"] == "send to a***@b.example failed"
    assert line["detail"] == "+***01 refused"
    assert "ann@" not in line["exc"] and "RuntimeError" in line["exc"]
    assert (line["campaignId"], line["tenantId"]) == ("campaign_1", "tenant_1")
    assert "campaignId=campaign_1 tenantId=tenant_1" in text and "a@b.example" not in text


def test_log_settings_are_validated() -> None:
    assert Settings(log_level="debug", log_format="TEXT").log_level == "DEBUG"
    with pytest.raises(ValueError):
        Settings(log_level="loud")
    with pytest.raises(ValueError):
        Settings(log_format="xml")


# ---- tracing ---------------------------------------------------------------------------------


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    yield exporter
    tracing.disable()


@pytest.fixture
async def traced_stack(make_stack: StackFactory, spans: InMemorySpanExporter) -> AsyncIterator[Stack]:
    """A stack whose API, client and worker carry the tracing interceptor (as `connect` adds it)."""
    base = await make_stack(worker=False)
    client = Client(
        base.client.service_client,
        namespace=base.client.namespace,
        data_converter=pydantic_data_converter,
        interceptors=tracing.client_interceptors(),
    )
    deps = ActivityDeps.build(base.settings, base.engine)
    worker = build_worker(client, base.settings, deps)
    task = asyncio.create_task(worker.run())
    control = CampaignControl(client, base.settings.task_queue, batches_per_run=base.settings.batches_per_run)
    app = create_app(base.settings, AppState(settings=base.settings, engine=base.engine, control=control))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as api:
        yield dataclasses.replace(base, api=api, client=client)
    await worker.shutdown()
    task.cancel()
    await deps.close()


async def test_a_campaign_is_one_trace_from_the_api_to_the_provider_calls(
    traced_stack: Stack, spans: InMemorySpanExporter
) -> None:
    cid, _ = await run_campaign(traced_stack, n=3)
    finished = list(spans.get_finished_spans())
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        by_name.setdefault(span.name, []).append(span)

    create = one(by_name["POST /campaigns"])
    trace_id = trace_of(create)
    in_trace = {span.name for span in finished if trace_of(span) == trace_id}
    assert {
        "StartWorkflow:CampaignWorkflow",
        "RunWorkflow:CampaignWorkflow",
        "HandleUpdate:execute",
        "StartActivity:send_batch",
        "RunActivity:send_batch",
        "smtp.send",
        "sms.send",
    } <= in_trace, sorted(in_trace)
    # Provider calls are children of the activity that made them.
    runs = {span_id(s) for s in by_name["RunActivity:send_batch"]}
    provider = by_name["smtp.send"] + by_name["sms.send"]
    assert len(provider) == 6
    assert all(s.parent is not None and s.parent.span_id in runs for s in provider)
    assert all(dict(s.attributes or {}).get("campaigns.verdict") == "ACCEPTED" for s in provider)
    # The execute call is its own trace; the workflow's handling of it links to it.
    execute = one(by_name["POST /campaigns/{campaign_id}/execute"])
    assert dict(execute.attributes or {})["campaigns.campaignId"] == cid
    handled = one(by_name["HandleUpdate:execute"])
    assert trace_of(execute) in {link.context.trace_id for link in handled.links}


def one(found: list[ReadableSpan]) -> ReadableSpan:
    assert len(found) == 1, [s.name for s in found]
    return found[0]


def trace_of(span: ReadableSpan) -> int:
    assert span.context is not None
    trace_id: int = span.context.trace_id
    return trace_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    found: int = span.context.span_id
    return found


def test_tracing_is_off_by_default_and_then_adds_nothing() -> None:
    assert tracing.configure(Settings().otlp_endpoint, "campaigns-test") is False
    assert tracing.tracer() is None and tracing.client_interceptors() == []
    assert tracing.provider_span("smtp.send") is tracing.provider_span("sms.send")  # one shared no-op
    assert tracing.traces_url("http://otel:4318/") == "http://otel:4318/v1/traces"
