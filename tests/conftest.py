"""Shared test fixtures: one real Postgres, Temporal dev server and sinks per session.

Postgres: `CAMPAIGNS_TEST_DATABASE_URL` if set, else an embedded pgserver. Each session gets a
fresh database. Tests isolate through unique tenant ids and task queues, not through cleanup.
"""

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.deps import ActivityDeps
from api.auth import issue_token
from api.deps import AppState
from api.lifecycle import CampaignControl
from api.main import create_app
from core.binaries import find_binary
from core.constants import SEARCH_ATTRIBUTES
from core.settings import Settings
from db.engine import make_engine, start_embedded_postgres
from db.migrate import upgrade
from devstack.sinks import SmsSink, SmtpSink
from worker import build_worker


def _admin_url() -> tuple[str, Path | None]:
    url = os.environ.get("CAMPAIGNS_TEST_DATABASE_URL")
    if url:
        return url, None
    tmp = Path(tempfile.mkdtemp(prefix="campaigns-pg-"))
    return start_embedded_postgres(tmp / "pg"), tmp


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return base + ("?" + query if query else "")


@pytest.fixture(scope="session")
def database_url() -> Any:
    admin, tmp = _admin_url()
    name = f"campaigns_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(admin, name)
    upgrade(url)
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if tmp is not None:
        import pgserver

        pgserver.get_server(str(tmp / "pg")).cleanup()  # type: ignore[attr-defined]
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url, pool_size=20)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    path = find_binary("temporal")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=path,
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=["--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"],
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def timeskip_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
async def sms_sink() -> AsyncIterator[SmsSink]:
    sink = await SmsSink().start()
    yield sink
    await sink.stop()


@dataclass
class Stack:
    """One test's view of the system: an API client per tenant over a real worker."""

    settings: Settings
    client: Client
    engine: AsyncEngine
    api: httpx.AsyncClient
    tenant: str
    other_tenant: str
    smtp: SmtpSink
    sms: SmsSink
    task_queue: str
    env: WorkflowEnvironment

    def headers(self, tenant: str | None = None, roles: list[str] | None = None) -> dict[str, str]:
        token = issue_token(self.settings, "user_test", [tenant or self.tenant], roles=roles)
        return {"Authorization": f"Bearer {token}"}

    def admin_headers(self, tenant: str | None = None) -> dict[str, str]:
        """A token of the tenant's administrator (the `admin` role: settings, senders, webhooks)."""
        return self.headers(tenant, roles=["admin"])

    async def call(self, method: str, path: str, tenant: str | None = None, **kw: Any) -> httpx.Response:
        return await self.api.request(method, path, headers=self.headers(tenant), **kw)


def make_settings(
    database_url: str, smtp: SmtpSink, sms: SmsSink, client: Client, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "temporal_address": client.service_client.config.target_host,
        "task_queue": f"campaigns-{uuid.uuid4().hex[:8]}",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "sms_url": sms.url,
        "sms_token": sms.token,
        "public_url": "http://testserver",
        # Tests send SMS at any hour: quiet hours apply only where a test sets them.
        "sms_quiet_hours_default": "",
        # Tenants' provider accounts point at the local sinks (docs/tenants-and-providers.md).
        "provider_hosts_allow_private": True,
        # Outbound webhook receivers in tests: plain http on 127.0.0.1 (docs/outbound-webhooks.md).
        "webhook_allow_private": True,
        "webhook_allow_http": True,
    }
    values.update(overrides)
    return Settings(**values)


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def make_stack(
    database_url: str,
    engine: AsyncEngine,
    temporal_env: WorkflowEnvironment,
    smtp_sink: SmtpSink,
    sms_sink: SmsSink,
) -> AsyncIterator[StackFactory]:
    async with _stack_factory(database_url, engine, temporal_env, smtp_sink, sms_sink, True) as factory:
        yield factory


@pytest.fixture
async def make_timeskip_stack(
    database_url: str,
    engine: AsyncEngine,
    timeskip_env: WorkflowEnvironment,
    smtp_sink: SmtpSink,
    sms_sink: SmsSink,
) -> AsyncIterator[StackFactory]:
    """Like make_stack, on the time-skipping test server (no custom search attributes there)."""
    async with _stack_factory(database_url, engine, timeskip_env, smtp_sink, sms_sink, False) as factory:
        yield factory


@pytest.fixture
async def make_fresh_timeskip_stack(
    database_url: str, engine: AsyncEngine, smtp_sink: SmtpSink, sms_sink: SmsSink
) -> AsyncIterator[StackFactory]:
    """A time-skipping server of the test's own, for tests that skip months or years: a shared
    server that earlier tests moved far ahead answers long skips past its RPC deadline."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        async with _stack_factory(database_url, engine, env, smtp_sink, sms_sink, False) as factory:
            yield factory
    finally:
        await env.shutdown()


@asynccontextmanager
async def _stack_factory(
    database_url: str,
    engine: AsyncEngine,
    temporal_env: WorkflowEnvironment,
    smtp_sink: SmtpSink,
    sms_sink: SmsSink,
    search_attributes: bool,
) -> AsyncIterator[StackFactory]:
    """Factory: a worker (in-process unless `worker=False`) and an API client, per test."""
    workers: list[tuple[Worker, ActivityDeps]] = []
    apis: list[httpx.AsyncClient] = []
    tasks: list[asyncio.Task[None]] = []
    tenants: list[str] = []

    async def factory(worker: bool = True, **overrides: Any) -> Stack:
        client = temporal_env.client
        settings = make_settings(database_url, smtp_sink, sms_sink, client, **overrides)
        if worker:
            deps = ActivityDeps.build(settings, engine)
            w = build_worker(client, settings, deps)
            tasks.append(asyncio.create_task(w.run()))
            workers.append((w, deps))
        control = CampaignControl(
            client,
            settings.task_queue,
            search_attributes=search_attributes,
            batches_per_run=settings.batches_per_run,
        )
        app = create_app(settings, AppState(settings=settings, engine=engine, control=control))
        api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        apis.append(api)
        suffix = uuid.uuid4().hex[:8]
        tenants.extend([f"tenant_{suffix}", f"tenant_other_{suffix}"])
        return Stack(
            settings=settings,
            client=client,
            engine=engine,
            api=api,
            tenant=f"tenant_{suffix}",
            other_tenant=f"tenant_other_{suffix}",
            smtp=smtp_sink,
            sms=sms_sink,
            task_queue=settings.task_queue,
            env=temporal_env,
        )

    yield factory
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT id, status FROM campaigns WHERE tenant_id = ANY(:t)"), {"t": tenants}
            )
        ).all()
    # A campaign the read model shows as COMPLETED or CANCELLED must have a closed workflow: one
    # still running (say, a cancelled campaign whose workflow never woke from its sleep) is a bug
    # the terminations below would otherwise hide, so it fails the test that left it.
    never_closed = [
        f"{row[0]} ({row[1]})"
        for row in rows
        if row[1] in FINAL_STATUSES and not await _closes(temporal_env.client, f"campaign-{row[0]}")
    ]
    # End every campaign workflow the test left running (a SCHEDULED or retrying one whose
    # per-test worker is gone would otherwise hold a task that no one takes: on the shared
    # time-skipping server that stops time from skipping for every later test).
    for campaign_id, _ in rows:
        for workflow_id in (f"campaign-{campaign_id}", f"campaign-{campaign_id}-resend"):
            try:
                await temporal_env.client.get_workflow_handle(workflow_id).terminate("test ended")
            except Exception:  # already closed, or never started
                pass
    for api in apis:
        await api.aclose()
    for w, deps in workers:
        await w.shutdown()
        await deps.close()
    for t in tasks:
        if not t.done():
            t.cancel()
    assert not never_closed, f"workflows still running although their campaign is final: {never_closed}"
    # The ledger names its runs without a foreign key (docs/architecture.md, "The ledger's keys"):
    # every send of every test checks here that no row it wrote names a run that does not exist.
    async with engine.connect() as conn:
        orphans = (await conn.execute(ORPHANED_DELIVERIES, {"t": tenants})).scalars().all()
    assert not orphans, f"ledger rows whose run does not exist: {orphans}"


ORPHANED_DELIVERIES = text(
    "SELECT d.id FROM deliveries d"
    " WHERE d.campaign_id IN (SELECT c.id FROM campaigns c WHERE c.tenant_id = ANY(:t))"
    " AND NOT EXISTS (SELECT 1 FROM send_runs r WHERE r.id = d.run_id) LIMIT 5"
)


FINAL_STATUSES = {"COMPLETED", "CANCELLED"}


async def _closes(client: Client, workflow_id: str, timeout: float = 15.0) -> bool:
    """Whether the workflow's latest run is closed, or closes within `timeout` (real) seconds.

    The read model is written by the workflow just before it returns, so a final status may be
    seen a moment before the close. `describe` never lets the time-skipping server skip time, so a
    sleeping workflow is not woken by this check itself.
    """
    handle = client.get_workflow_handle(workflow_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            status = (await handle.describe()).status
        except RPCError:  # never started (a JOURNEY campaign has no workflow of its own)
            return True
        if status != WorkflowExecutionStatus.RUNNING:
            return True
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.1)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed key and certificate for 127.0.0.1 (TLS servers of the provider tests)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert
