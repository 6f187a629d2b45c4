"""How fast pause, resume and cancel answer while a campaign is sending.

    .venv/bin/python -m benchmarks.lifecycle_bench --recipients 5000 --rounds 5

Same real parts as `send_bench` (own Temporal dev server, sinks in their own process, in-process
worker, local Postgres scratch database). A pause or cancel answers only once the running batch
has stopped starting messages and its in-flight ones are done, so its latency is what an operator
waits for "nothing more will be sent".
"""

import argparse
import asyncio
import multiprocessing
import os
import statistics
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
from benchmarks.send_bench import free_port, run_sinks, wait_port
from core.binaries import find_binary
from core.constants import SEARCH_ATTRIBUTES
from core.settings import Settings
from db.engine import make_engine
from db.migrate import upgrade
from tests.factories import make_audience, make_templates
from worker import build_worker


async def timed(api: httpx.AsyncClient, path: str) -> float:
    t0 = time.perf_counter()
    r = await api.post(path)
    assert r.status_code == 200, r.text
    return (time.perf_counter() - t0) * 1000


async def main(recipients: int, rounds: int) -> None:
    admin = os.environ.get("CAMPAIGNS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"campaigns_lifebench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
    )
    smtp_port, sms_port = free_port(), free_port()
    sinks = multiprocessing.get_context("spawn").Process(
        target=run_sinks, args=(smtp_port, sms_port), daemon=True
    )
    sinks.start()
    await wait_port(smtp_port)
    engine = make_engine(url, pool_size=24)
    settings = Settings(
        environment="test",
        database_url=url,
        task_queue="lifebench",
        smtp_port=smtp_port,
        sms_url=f"http://127.0.0.1:{sms_port}/messages",
    )
    pauses: list[float] = []
    resumes: list[float] = []
    cancels: list[float] = []
    try:
        deps = ActivityDeps.build(settings, engine)
        app = create_app(
            settings, AppState(settings, engine, CampaignControl(env.client, settings.task_queue))
        )
        headers = {"Authorization": "Bearer " + issue_token(settings, "bench", ["tenant_life"])}
        async with (
            build_worker(env.client, settings, deps),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench", headers=headers, timeout=60
            ) as api,
        ):
            email_t, _ = await make_templates(engine, "tenant_life")
            for _ in range(rounds):
                audience = await make_audience(engine, "tenant_life", recipients)
                body = {
                    "tenantId": "tenant_life",
                    "name": "bench",
                    "segmentId": audience.segment_id,
                    "channels": ["EMAIL"],
                    "emailTemplateId": email_t,
                }
                cid = (await api.post("/campaigns", json=body)).json()["id"]
                await api.post(f"/campaigns/{cid}/execute")
                await asyncio.sleep(2.0)  # mid-send
                pauses.append(await timed(api, f"/campaigns/{cid}/pause"))
                resumes.append(await timed(api, f"/campaigns/{cid}/resume"))
                await asyncio.sleep(1.0)
                cancels.append(await timed(api, f"/campaigns/{cid}/cancel"))
        await deps.close()
    finally:
        sinks.kill()
        await engine.dispose()
        await env.shutdown()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"{rounds} campaigns of {recipients} recipients, concurrency {settings.send_concurrency}")
    for label, values in (("pause", pauses), ("resume", resumes), ("cancel", cancels)):
        print(f"{label:<7} median {statistics.median(values):6.0f} ms   max {max(values):6.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.recipients, args.rounds))
