"""The real parts every benchmark stands on: a scratch database, a Temporal dev server, the sinks
in their own process, a worker and the API, started and torn down in one place."""

import asyncio
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.deps import ActivityDeps
from api.auth import issue_token
from api.deps import AppState
from api.lifecycle import CampaignControl
from api.main import create_app
from core.binaries import find_binary
from core.constants import SEARCH_ATTRIBUTES
from core.gc_tuning import tune_for_service
from core.settings import Settings, as_environment
from db.engine import make_engine
from db.migrate import upgrade
from devstack.sinks import SmsSink, SmtpSink
from worker import build_worker


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A migrated database on CAMPAIGNS_BENCH_DATABASE_URL's server, dropped afterwards."""
    admin = os.environ.get("CAMPAIGNS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"campaigns_{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        # The admin URL with the scratch database's name (its query, e.g. a Unix socket's
        # `?host=/var/run/postgresql`, kept).
        url = make_url(admin).set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_sinks(smtp_port: int, sms_port: int) -> None:
    async def serve() -> None:
        SmtpSink(port=smtp_port, keep=False).start()
        await SmsSink(port=sms_port).start()
        await asyncio.Event().wait()

    asyncio.run(serve())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


@dataclass
class BenchStack:
    settings: Settings
    engine: AsyncEngine
    api: httpx.AsyncClient
    tenant: str
    client: Client
    sink_pid: int | None = None  # the sinks' process: the outside world, left out of CPU figures


def start_worker_process(cfg: Settings) -> subprocess.Popen[bytes]:
    """One more worker, as its own process (`python worker.py`), with the bench's settings."""
    env = {
        **os.environ,
        **as_environment(cfg),
        "CAMPAIGNS_LOG_LEVEL": "WARNING",
        "CAMPAIGNS_LOG_FORMAT": "text",
    }
    root = Path(__file__).resolve().parents[1]
    return subprocess.Popen(
        [sys.executable, "worker.py"], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


@asynccontextmanager
async def bench_stack(
    prefix: str, tenant: str, worker_processes: int = 0, **settings: Any
) -> AsyncIterator[BenchStack]:
    """Everything running, with an API client authorised for `tenant`; `worker_processes` more
    workers in their own processes beside the in-process one."""
    with scratch_database(prefix) as url:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=find_binary("temporal"),
            data_converter=pydantic_data_converter,
            search_attributes=SEARCH_ATTRIBUTES,
        )
        # The sinks run in their own process, as a real SMTP server and SMS API would: in-process
        # they would share the worker's GIL and halve what is measured.
        smtp_port, sms_port = free_port(), free_port()
        sinks = multiprocessing.get_context("spawn").Process(
            target=run_sinks, args=(smtp_port, sms_port), daemon=True
        )
        sinks.start()
        await wait_port(smtp_port)
        await wait_port(sms_port)
        cfg = Settings(
            environment="test",
            database_url=url,
            task_queue=prefix,
            temporal_address=env.client.service_client.config.target_host,
            smtp_port=smtp_port,
            sms_url=f"http://127.0.0.1:{sms_port}/messages",
            sms_token="dev-sms-token",
            # Benches send SMS at any hour (README "Sending policies": no default quiet hours).
            **{"sms_quiet_hours_default": "", **settings},
        )
        engine = make_engine(url, pool_size=cfg.send_concurrency + 8)
        extra = [start_worker_process(cfg) for _ in range(worker_processes)]
        deps = ActivityDeps.build(cfg, engine)
        app = create_app(cfg, AppState(cfg, engine, CampaignControl(env.client, cfg.task_queue)))
        headers = {"Authorization": "Bearer " + issue_token(cfg, "bench", [tenant])}
        try:
            async with (
                build_worker(env.client, cfg, deps),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://bench",
                    headers=headers,
                    timeout=60,
                ) as api,
            ):
                # As worker.py and the API do once started (core.gc_tuning): the figures are those
                # of the service's processes.
                tune_for_service()
                yield BenchStack(cfg, engine, api, tenant, env.client, sinks.pid)
        finally:
            for proc in extra:
                proc.kill()
                proc.wait()
            await deps.close()
            sinks.kill()
            await engine.dispose()
            await env.shutdown()


# ---- a lean HTTP load generator, run in its own process (bench.api_bench) -----------------------
# Raw asyncio streams over keep-alive connections, requests encoded before the clock starts and a
# minimal response reader: an HTTP library would cost the box more than the routes it measures.


def encode(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """One HTTP/1.1 keep-alive request, ready to write."""
    lines = [f"{method} {path} HTTP/1.1", "Host: bench", *(f"{k}: {v}" for k, v in headers.items())]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one request, read its whole answer; its status."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
            break
    if length:
        await reader.readexactly(length)
    return status


async def _load(
    port: int, requests: list[bytes], clients: int, expect: int
) -> tuple[list[float], float, int]:
    pending = iter(requests)
    latencies: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in pending:
                t0 = time.perf_counter()
                try:
                    status = await _exchange(reader, writer, request)
                except (asyncio.IncompleteReadError, ConnectionError):
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                errors += status != expect
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.perf_counter() - started, errors


def run_load(port: int, requests: list[bytes], clients: int, expect: int) -> tuple[list[float], float, int]:
    """Entry point of the load process: (latencies in seconds, wall seconds, errors)."""
    try:
        import uvloop

        return uvloop.run(_load(port, requests, clients, expect))
    except ImportError:
        return asyncio.run(_load(port, requests, clients, expect))
