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
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp

from api.auth import issue_token
from bench.api_bench import start_api
from bench.harness import bench_stack, free_port, wait_port
from db.ledger.reads import campaign_tally
from db.measurements import deliveries_and_runs
from db.seed import make_audience, make_templates

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
        customers = (await make_audience(stack.engine, TENANT, args.customers)).customers
        template_id, _ = await make_templates(stack.engine, TENANT)
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
        api = start_api(cfg, port, args.workers)  # the same process and settings as bench.api_bench
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
                    sent = (await campaign_tally(conn, cid)).sent
                if sent >= args.events or time.perf_counter() - started > 600:
                    break
                await asyncio.sleep(0.2)
            drained = time.perf_counter() - started
            async with stack.engine.connect() as conn:
                rows = await deliveries_and_runs(conn, cid)
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
