"""Sending throughput: one ONE_TIME campaign end to end on real parts, timed.

    .venv/bin/python -m benchmarks.send_bench --recipients 20000 --channels EMAIL SMS

Starts its own Temporal dev server, SMTP and SMS sinks and an in-process worker; uses the local
Postgres (CAMPAIGNS_BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/postgres)
in a scratch database it drops afterwards. Prints messages/s and the worker's peak RSS.
"""

import argparse
import asyncio
import multiprocessing
import os
import resource
import socket
import time
import uuid

import httpx
import psycopg
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.deps import ActivityDeps
from api.auth import issue_token
from api.deps import AppState
from api.lifecycle import CampaignControl
from api.main import create_app
from core.binaries import find_binary
from core.constants import SEARCH_ATTRIBUTES
from core.settings import Settings
from db.engine import make_engine
from db.migrate import upgrade
from devstack.sinks import SmsSink, SmtpSink
from tests.factories import make_audience, make_templates
from worker import build_worker


async def main(recipients: int, channels: list[str], batch_size: int, concurrency: int) -> None:
    admin = os.environ.get("CAMPAIGNS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"campaigns_sendbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
    )
    # The sinks run in their own process, as a real SMTP server and SMS API would: in-process
    # they would share the worker's GIL and halve what is measured.
    ctx = multiprocessing.get_context("spawn")
    smtp_port, sms_port = free_port(), free_port()
    sinks = ctx.Process(target=run_sinks, args=(smtp_port, sms_port), daemon=True)
    sinks.start()
    await wait_port(smtp_port)
    await wait_port(sms_port)
    engine = make_engine(url, pool_size=concurrency + 8)
    try:
        settings = Settings(
            environment="test",
            database_url=url,
            task_queue="bench",
            smtp_port=smtp_port,
            sms_url=f"http://127.0.0.1:{sms_port}/messages",
            sms_token="dev-sms-token",
            batch_size=batch_size,
            send_concurrency=concurrency,
        )
        deps = ActivityDeps.build(settings, engine)
        worker = build_worker(env.client, settings, deps)
        app = create_app(
            settings, AppState(settings, engine, CampaignControl(env.client, settings.task_queue))
        )
        headers = {"Authorization": "Bearer " + issue_token(settings, "bench", ["tenant_bench"])}
        async with (
            worker,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench", headers=headers
            ) as api,
        ):
            t0 = time.perf_counter()
            audience = await make_audience(engine, "tenant_bench", recipients, no_phone_every=10)
            email_t, sms_t = await make_templates(engine, "tenant_bench")
            setup = time.perf_counter() - t0
            body = {
                "tenantId": "tenant_bench",
                "name": "bench",
                "segmentId": audience.segment_id,
                "channels": channels,
                "emailTemplateId": email_t,
                "smsTemplateId": sms_t,
            }
            cid = (await api.post("/campaigns", json=body)).json()["id"]
            t0 = time.perf_counter()
            r = await api.post(f"/campaigns/{cid}/execute")
            assert r.status_code == 200, r.text
            status = ""
            while status != "COMPLETED":
                await asyncio.sleep(0.2)
                status = (await api.get(f"/campaigns/{cid}")).json()["status"]
            elapsed = time.perf_counter() - t0
            r = await api.get(f"/campaigns/{cid}/recipients", params={"outcome": "SENT", "take": 1})
            messages = r.json()["meta"]["total"]
            email = (
                await api.get(
                    f"/campaigns/{cid}/recipients", params={"outcome": "SENT", "channel": "EMAIL", "take": 1}
                )
            ).json()["meta"]["total"]
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"recipients={recipients} channels={','.join(channels)}", end=" ")
        print(f"batch={batch_size} concurrency={concurrency}")
        print(f"setup (bulk insert audience): {setup:.1f} s")
        print(f"messages sent: {messages} (email {email}, sms {messages - email})")
        print(f"execute -> COMPLETED: {elapsed:.1f} s  = {messages / elapsed:.0f} messages/s")
        print(f"peak RSS of the worker + API process: {rss_mb:.0f} MiB")
        await deps.close()
    finally:
        sinks.kill()
        await engine.dispose()
        await env.shutdown()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_sinks(smtp_port: int, sms_port: int) -> None:
    async def serve() -> None:
        SmtpSink(port=smtp_port).start()
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--channels", nargs="+", default=["EMAIL", "SMS"])
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=Settings().send_concurrency)
    args = parser.parse_args()
    asyncio.run(main(args.recipients, args.channels, args.batch_size, args.concurrency))
