"""API latency and tracking throughput through a real uvicorn server (issue 7).

    .venv/bin/python -m bench.api_bench [--campaigns 10000] [--clients 50] [--requests 5000] [--workers 1]

Seeds one tenant with `--campaigns` campaigns (SQL bulk insert, with roll-up counters) and one sent
campaign with `--deliveries` email deliveries, starts the API as its own `uvicorn api.main:app`
process (`--workers` processes), then drives it with `--clients` concurrent aiohttp clients:
- `GET /campaigns/:id` (random campaigns of the tenant) and `GET /campaigns?tenantId=` (first page);
- the open pixel `/t/o/<token>` and the click redirect `/t/c/<token>` on random deliveries (each
  request records an interaction: insert, first-of-a-kind and counters).
Prints p50/p99 latency and requests/s per endpoint.
"""

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass

import aiohttp
from sqlalchemy import text

from api.auth import issue_token
from bench.harness import BenchStack, bench_stack, free_port, wait_port
from providers.tracking import tracking_links

TENANT = "tenant_api_bench"


@dataclass
class Result:
    name: str
    latencies: list[float]
    seconds: float
    errors: int

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


async def seed(stack: BenchStack, campaigns: int, deliveries: int) -> tuple[list[str], str, list[str]]:
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                """
                INSERT INTO campaigns (id, tenant_id, club_id, name, type, status, channels, created_at)
                SELECT 'campaign_b' || lpad(g::text, 10, '0'), :t, 'club_' || (g % 20), 'Campaign ' || g,
                       'ONE_TIME', (ARRAY['DRAFT','SCHEDULED','ACTIVE','COMPLETED'])[1 + g % 4],
                       ARRAY['EMAIL'], now() - make_interval(secs => g)
                FROM generate_series(1, :n) g
                """
            ),
            {"t": TENANT, "n": campaigns},
        )
        await conn.execute(
            text(
                """
                INSERT INTO campaign_counters (campaign_id, channel, type, recipients, events)
                SELECT 'campaign_b' || lpad(g::text, 10, '0'), 'ALL', k, 100 + g % 50, 100 + g % 50
                FROM generate_series(1, :n) g, unnest(ARRAY['SENT','DELIVERED','OPENED']) k
                """
            ),
            {"n": campaigns},
        )
        sent = "campaign_b" + "1".zfill(10)
        await conn.execute(
            text(
                "INSERT INTO send_runs (id, campaign_id, tenant_id, number, snapshot_complete, target_count)"
                " VALUES (:r, :c, :t, 1, true, :n)"
            ),
            {"r": f"{sent}.r1", "c": sent, "t": TENANT, "n": deliveries},
        )
        await conn.execute(
            text(
                """
                INSERT INTO customers (id, tenant_id, external_id, email, first_name)
                SELECT 'customer_b' || g, :t, 'x' || g, 'm' || g || '@bench.example.com', 'F' || g
                FROM generate_series(1, :n) g
                """
            ),
            {"t": TENANT, "n": deliveries},
        )
        await conn.execute(
            text(
                """
                INSERT INTO deliveries (id, run_id, campaign_id, tenant_id, customer_id, channel, outcome,
                                        address, sent_at)
                SELECT 'delivery_b' || g, :r, :c, :t, 'customer_b' || g, 'EMAIL', 'SENT',
                       'm' || g || '@bench.example.com', now()
                FROM generate_series(1, :n) g
                """
            ),
            {"r": f"{sent}.r1", "c": sent, "t": TENANT, "n": deliveries},
        )
        await conn.execute(text("ANALYZE"))
    ids = [f"campaign_b{str(g).zfill(10)}" for g in range(1, campaigns + 1)]
    return ids, sent, [f"delivery_b{g}" for g in range(1, deliveries + 1)]


async def drive(name: str, urls: list[str], clients: int, headers: dict[str, str], expect: int) -> Result:
    queue = list(reversed(urls))
    latencies: list[float] = []
    errors = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while queue:
            url = queue.pop()
            t0 = time.perf_counter()
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                await resp.read()
                if resp.status != expect:
                    errors += 1
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=clients)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return Result(name, latencies, time.perf_counter() - started, errors)


async def main(args: argparse.Namespace) -> None:
    results: list[Result] = []
    async with bench_stack("apibench", TENANT) as stack:
        cfg = stack.settings
        ids, sent, deliveries = await seed(stack, args.campaigns, args.deliveries)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
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
            "CAMPAIGNS_PUBLIC_URL": base,
            "CAMPAIGNS_LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port)]
        command += ["--log-level", "warning", "--workers", str(args.workers)]
        api = subprocess.Popen(command, env=env)  # noqa: ASYNC220 - started before measuring
        try:
            await wait_port(port)
            await asyncio.sleep(1.5)
            headers = {"Authorization": "Bearer " + issue_token(cfg, "bench", [TENANT])}
            rng = random.Random(7)
            n = args.requests
            links = tracking_links(base, cfg.tracking_secret)
            warm = [f"{base}/campaigns/{rng.choice(ids)}" for _ in range(200)]
            await drive("warm-up", warm, args.clients, headers, 200)
            one = [f"{base}/campaigns/{rng.choice(ids)}" for _ in range(n)]
            results.append(await drive("GET /campaigns/:id", one, args.clients, headers, 200))
            listed = [f"{base}/campaigns?tenantId={TENANT}" for _ in range(n)]
            results.append(
                await drive("GET /campaigns?tenantId= (10,000 in tenant)", listed, args.clients, headers, 200)
            )
            pixels = [links.open_url(sent, rng.choice(deliveries)) for _ in range(n)]
            results.append(await drive("open pixel /t/o/<token>", pixels, args.clients, {}, 200))
            clicks = [
                links.click_url(sent, rng.choice(deliveries), "link_1", "https://example.com/offer")
                for _ in range(n)
            ]
            results.append(await drive("click redirect /t/c/<token>", clicks, args.clients, {}, 302))
        finally:
            api.terminate()
            api.wait(10)
    print(f"\n{args.clients} concurrent clients, {args.requests:,} requests each", end="")
    print(f", uvicorn workers: {args.workers}")
    print("| endpoint | p50 | p99 | throughput | errors |")
    print("|---|---|---|---|---|")
    for r in results:
        rate = len(r.latencies) / r.seconds
        print(f"| {r.name} | {r.pct(0.5):.1f} ms | {r.pct(0.99):.1f} ms | {rate:,.0f} req/s | {r.errors} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--workers", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
