"""Benchmark: TRIGGERED event ingestion (`POST /events`) through a real uvicorn server.

    .venv/bin/python -m bench.events_bench [--events 5000] [--clients 32] [--batch 0]

Starts the real parts (scratch database, Temporal dev server, sinks in their own process, a worker)
and the API as its own `uvicorn api.main:app` process, as deployed. Creates `--customers`
customers and one ACTIVE TRIGGERED campaign, then posts `--events` matching events (each for one
customer, each id unique) from `--clients` concurrent HTTP clients, one event per request (or
`--batch N` events per `POST /events/batch`). Reports events accepted per second and request
latency, then how long the campaign takes to send every one of them (each exactly once: the
ledger is checked).
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from sqlalchemy import insert, text

from api.auth import issue_token
from bench.harness import bench_stack, free_port, wait_port
from core.ids import new_id
from db.models import Customer, Template

TENANT = "tenant_events_bench"
EVENT = "scl.member.tier.changed"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--batch", type=int, default=0, help="events per POST /events/batch (0: one per request)"
    )
    args = parser.parse_args()

    async with bench_stack("events", TENANT, trigger_poll_interval=0.1) as stack:
        cfg = stack.settings
        customers = [
            {
                "id": new_id("customer"),
                "tenant_id": TENANT,
                "external_id": f"m{i}",
                "email": f"m{i}@bench.example.com",
                "email_opt_in": True,
                "sms_opt_in": False,
                "first_name": f"M{i}",
                "attributes": {},
            }
            for i in range(args.customers)
        ]
        template_id = new_id("template")
        async with stack.engine.begin() as conn:
            await conn.execute(insert(Customer), customers)
            await conn.execute(
                insert(Template).values(
                    id=template_id,
                    tenant_id=TENANT,
                    name="Upgrade",
                    channel="EMAIL",
                    subject="Welcome to {{ attributes.tier | default('gold') }}",
                    html="<p>Hi {{ firstName }}</p>",
                    text="Hi {{ firstName }}",
                )
            )
        r = await stack.api.post(
            "/campaigns",
            json={
                "tenantId": TENANT,
                "name": "Upgrade welcome",
                "type": "TRIGGERED",
                "channels": ["EMAIL"],
                "emailTemplateId": template_id,
                "triggerEvent": EVENT,
                "triggerConditions": {"reason": "upgrade"},
            },
        )
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        assert (await stack.api.post(f"/campaigns/{cid}/execute")).status_code == 200

        # The API as deployed: its own process, real HTTP.
        port = free_port()
        env = {
            **os.environ,
            "CAMPAIGNS_ENVIRONMENT": "test",
            # A benchmark measures the process's capacity, which a tenant's budget would hide.
            "CAMPAIGNS_RATE_LIMIT_TENANT_PER_SECOND": "0",
            "CAMPAIGNS_RATE_LIMIT_IP_PER_SECOND": "0",
            "CAMPAIGNS_RATE_LIMIT_TRACKING_IP_PER_SECOND": "0",
            "CAMPAIGNS_DATABASE_URL": cfg.database_url or "",
            "CAMPAIGNS_TEMPORAL_ADDRESS": cfg.temporal_address,
            "CAMPAIGNS_TASK_QUEUE": cfg.task_queue,
            "CAMPAIGNS_LOG_LEVEL": "WARNING",
        }
        api = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.main:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--workers",
                str(args.workers),
            ],
            env=env,
        )
        try:
            await wait_port(port)
            await asyncio.sleep(1)
            token = issue_token(cfg, "bench", [TENANT])
            now = datetime.now(UTC).isoformat()
            run = uuid.uuid4().hex[:6]
            events = [
                {
                    "id": f"{run}-{i}",
                    "type": EVENT,
                    "tenantId": TENANT,
                    "customerId": customers[i % len(customers)]["id"],
                    "occurredAt": now,
                    "data": {"reason": "upgrade", "tier": "gold"},
                }
                for i in range(args.events)
            ]
            if args.batch:
                bodies: list[tuple[str, Any]] = [
                    ("/events/batch", {"events": events[i : i + args.batch]})
                    for i in range(0, len(events), args.batch)
                ]
            else:
                bodies = [("/events", e) for e in events]
            latencies: list[float] = []
            queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
            for body in bodies:
                queue.put_nowait(body)
            headers = {"Authorization": f"Bearer {token}"}
            failures = 0

            async def client(session: aiohttp.ClientSession) -> None:
                nonlocal failures
                while not queue.empty():
                    path, body = queue.get_nowait()
                    t0 = time.perf_counter()
                    async with session.post(
                        f"http://127.0.0.1:{port}{path}", json=body, headers=headers
                    ) as resp:
                        await resp.read()
                        if resp.status != 202:
                            failures += 1
                    latencies.append(time.perf_counter() - t0)

            started = time.perf_counter()
            async with aiohttp.ClientSession() as session:
                await asyncio.gather(*(client(session) for _ in range(args.clients)))
            ingest = time.perf_counter() - started

            # Every event becomes exactly one message.
            while True:
                async with stack.engine.connect() as conn:
                    sent = (
                        await conn.execute(
                            text(
                                "SELECT count(*) FROM deliveries WHERE campaign_id = :c AND outcome = 'SENT'"
                            ),
                            {"c": cid},
                        )
                    ).scalar_one()
                if sent >= args.events or time.perf_counter() - started > 600:
                    break
                await asyncio.sleep(0.2)
            drained = time.perf_counter() - started
            async with stack.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        text(
                            "SELECT count(*), count(DISTINCT run_id) FROM deliveries WHERE campaign_id = :c"
                        ),
                        {"c": cid},
                    )
                ).one()
        finally:
            api.terminate()
            api.wait(10)

    mode = f"batches of {args.batch}" if args.batch else "one event per request"
    mode += f", {args.workers} uvicorn process(es)"
    print(f"\nPOST /events, {args.events} events, {args.clients} concurrent clients, {mode}")
    print("| what | figure |")
    print("|---|---|")
    print(f"| accepted (202) | {args.events / ingest:,.0f} events/s ({ingest:.2f} s, {failures} failures) |")
    print(
        f"| request latency | median {statistics.median(latencies) * 1000:.1f} ms,"
        f" p99 {percentile(latencies, 0.99) * 1000:.1f} ms |"
    )
    print(f"| all sent (from first post) | {drained:.2f} s ({args.events / drained:,.0f} messages/s) |")
    print(
        f"| ledger | {rows[0]} deliveries in {rows[1]} event runs"
        f" (expected {args.events} and {args.events}) |"
    )


if __name__ == "__main__":
    asyncio.run(main())
