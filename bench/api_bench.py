"""The API's edges against the cheapest route the same server answers (issues 7 and 19).

    .venv/bin/python -m bench.api_bench [--campaigns 10000] [--deliveries 20000] [--requests 5000]
        [--clients 10,50] [--workers 1] [--burst 0]

Seeds one tenant with `--campaigns` campaigns (with roll-up counters) and one sent campaign with
`--deliveries` email deliveries and their SENT interactions, starts the API as its own
`uvicorn api.main:app` process (`--workers` processes), then measures, at each `--clients` level,
`--requests` requests of each route after a short warm-up: the empty route `/health/live`,
`GET /campaigns/:id`, the tenant's list, `/stats`, `/interactions`, the open pixel, the click
redirect and the one-click unsubscribe POST. Each row gives p50/p99, req/s and the ratio of its
req/s to the empty route's at the same level, then the acceptance lines of issue 19.

The load generator (bench.harness.run_load) runs in its own process: raw asyncio streams over keep-alive
connections, requests encoded before the clock starts, a minimal response reader, so the client
costs the box as little as possible (an HTTP library would cost more than the routes it measures).

After the tracking routes, the bench waits for the background roll-up to count what they appended
and reports that lag. `--burst N` then fires N more opens and clicks, half each, at the highest
client level, reports the lag once the burst is acknowledged, and checks `/stats` against the
interactions table (distinct openers and clickers, events).
"""

import argparse
import asyncio
import multiprocessing
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from api.auth import issue_token
from bench.harness import BenchStack, bench_stack, encode, free_port, run_load, wait_port
from db.bench_seed import interaction_totals, seed_listing
from providers.tracking import tracking_links

TENANT = "tenant_api_bench"
EMPTY = "empty route GET /health/live"
READS = (
    "GET /campaigns/:id",
    "GET /campaigns?tenantId=",
    "GET /campaigns/:id/stats",
    "GET /campaigns/:id/interactions",
)
PIXEL, CLICK, UNSUBSCRIBE = (
    "open pixel GET /t/o/<token>",
    "click GET /t/c/<token>",
    "unsubscribe POST /t/u/<token>",
)


@dataclass
class Result:
    name: str
    clients: int
    latencies: list[float]
    seconds: float
    errors: int

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000 if ordered else 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


# ---- seeding ------------------------------------------------------------------------------------


async def seed(stack: BenchStack, campaigns: int, deliveries: int) -> tuple[list[str], str, list[str]]:
    async with stack.engine.begin() as conn:
        sent = await seed_listing(conn, TENANT, campaigns, deliveries)
    ids = [f"campaign_b{str(g).zfill(10)}" for g in range(1, campaigns + 1)]
    return ids, sent, [f"delivery_b{g}" for g in range(1, deliveries + 1)]


# ---- the run ------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    expect: int
    make: Any  # (rng) -> bytes: one encoded request


def targets(cfg: Any, ids: list[str], sent: str, deliveries: list[str]) -> list[Target]:
    auth = {"Authorization": "Bearer " + issue_token(cfg, "bench", [TENANT])}
    links = tracking_links("http://bench", cfg.tracking_secret)
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    def path(url: str) -> str:
        return urlsplit(url).path

    return [
        Target(EMPTY, 200, lambda r: encode("GET", "/health/live", {})),
        Target(READS[0], 200, lambda r: encode("GET", f"/campaigns/{r.choice(ids)}", auth)),
        Target(READS[1], 200, lambda r: encode("GET", f"/campaigns?tenantId={TENANT}", auth)),
        Target(READS[2], 200, lambda r: encode("GET", f"/campaigns/{sent}/stats", auth)),
        Target(READS[3], 200, lambda r: encode("GET", f"/campaigns/{sent}/interactions", auth)),
        Target(PIXEL, 200, lambda r: encode("GET", path(links.open_url(sent, r.choice(deliveries))), {})),
        Target(
            CLICK,
            302,
            lambda r: encode(
                "GET",
                path(links.click_url(sent, r.choice(deliveries), "link_1", "https://example.com/o")),
                {},
            ),
        ),
        Target(
            UNSUBSCRIBE,
            200,
            lambda r: encode(
                "POST",
                path(links.unsubscribe_url(sent, r.choice(deliveries))),
                form,
                b"List-Unsubscribe=One-Click",
            ),
        ),
    ]


async def stats_of(port: int, cfg: Any, campaign_id: str) -> dict[str, Any]:
    headers = {"Authorization": "Bearer " + issue_token(cfg, "bench", [TENANT])}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as http:
        body: dict[str, Any] = (await http.get(f"/campaigns/{campaign_id}/stats")).json()
        return body


async def wait_caught_up(port: int, cfg: Any, campaign_id: str, timeout: float = 120) -> tuple[float, int]:
    """Seconds until /stats reports nothing pending, and the most it saw pending."""
    started, most = time.perf_counter(), 0
    while time.perf_counter() - started < timeout:
        pending = int((await stats_of(port, cfg, campaign_id))["rollupPending"])
        most = max(most, pending)
        if pending == 0:
            return time.perf_counter() - started, most
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the roll-up did not catch up in {timeout} s")


def measure(pool: Any, port: int, target: Target, rng: random.Random, n: int, clients: int) -> Result:
    warm = [target.make(rng) for _ in range(min(300, n))]
    pool.apply(run_load, (port, warm, clients, target.expect))
    requests = [target.make(rng) for _ in range(n)]
    latencies, seconds, errors = pool.apply(run_load, (port, requests, clients, target.expect))
    return Result(target.name, clients, latencies, seconds, errors)


async def truth(stack: BenchStack, campaign_id: str) -> dict[str, int]:
    """What the interactions table says, counted the slow way."""
    async with stack.engine.connect() as conn:
        totals = await interaction_totals(conn, campaign_id)
    return {"openedCount": totals.opened, "clickedCount": totals.clicked, "events": totals.events}


def start_api(cfg: Any, port: int, workers: int) -> "subprocess.Popen[bytes]":
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
        "CAMPAIGNS_PUBLIC_URL": "http://bench",
        "CAMPAIGNS_TRACKING_SECRET": cfg.tracking_secret,
        "CAMPAIGNS_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port)]
    command += ["--log-level", "warning", "--workers", str(workers), "--no-access-log"]
    return subprocess.Popen(command, env=env)


async def main(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()[0]  # the box is shared: the figures mean little if it was busy
    levels = [int(c) for c in args.clients.split(",")]
    results: list[Result] = []
    lags: list[str] = []
    async with bench_stack("apibench", TENANT) as stack:
        cfg = stack.settings
        ids, sent, deliveries = await seed(stack, args.campaigns, args.deliveries)
        port = free_port()
        api = start_api(cfg, port, args.workers)
        pool = multiprocessing.get_context("spawn").Pool(1)
        try:
            await wait_port(port)
            await asyncio.sleep(1.0)
            rng = random.Random(7)
            for clients in levels:
                for target in targets(cfg, ids, sent, deliveries):
                    results.append(
                        await asyncio.to_thread(measure, pool, port, target, rng, args.requests, clients)
                    )
                seconds, most = await wait_caught_up(port, cfg, sent)
                lags.append(
                    f"after the tracking routes at {clients} clients: {most:,} pending,"
                    f" caught up in {seconds:.2f} s"
                )
            if args.burst:
                lags.append(await burst(stack, pool, port, cfg, sent, deliveries, args.burst, max(levels)))
        finally:
            pool.terminate()
            api.terminate()
            api.wait(10)
    print(
        f"\nload average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f},"
        f" cores: {os.cpu_count()}"
    )
    report(args, levels, results, lags)


async def burst(
    stack: BenchStack, pool: Any, port: int, cfg: Any, sent: str, deliveries: list[str], n: int, clients: int
) -> str:
    """N opens and clicks as fast as the clients go; the roll-up's lag; /stats against the table."""
    rng = random.Random(19)
    links = tracking_links("http://bench", cfg.tracking_secret)
    requests = [
        encode("GET", urlsplit(links.open_url(sent, rng.choice(deliveries))).path, {"User-Agent": f"b{i}"})
        if i % 2 == 0
        else encode(
            "GET",
            urlsplit(links.click_url(sent, rng.choice(deliveries), "link_2", "https://example.com/b")).path,
            {"User-Agent": f"b{i}"},
        )
        for i in range(n)
    ]
    # Opens answer 200 and clicks 302: count errors as neither.
    latencies, seconds, _ = await asyncio.to_thread(pool.apply, run_load, (port, requests, clients, 0))
    caught, most = await wait_caught_up(port, cfg, sent)
    stats, table = await stats_of(port, cfg, sent), await truth(stack, sent)
    same = stats["openedCount"] == table["openedCount"] and stats["clickedCount"] == table["clickedCount"]
    return (
        f"burst of {n:,} opens and clicks at {clients} clients: {len(latencies) / seconds:,.0f} req/s;"
        f" {most:,} pending when acknowledged, caught up {caught:.2f} s later;"
        f" /stats opened {stats['openedCount']:,} clicked {stats['clickedCount']:,}"
        f" = table {table['openedCount']:,} / {table['clickedCount']:,}: {'EXACT' if same else 'MISMATCH'}"
    )


def report(args: argparse.Namespace, levels: list[int], results: list[Result], lags: list[str]) -> None:
    print(f"uvicorn workers: {args.workers}; {args.requests:,} requests per route and level")
    print("| route | clients | p50 | p99 | req/s | vs empty | errors |")
    print("|---|---|---|---|---|---|---|")
    empty = {r.clients: r.rate for r in results if r.name == EMPTY}
    for r in results:
        ratio = r.rate / empty[r.clients] if empty.get(r.clients) else 0.0
        print(
            f"| {r.name} | {r.clients} | {r.pct(0.5):.1f} ms | {r.pct(0.99):.1f} ms | {r.rate:,.0f} |"
            f" {ratio:.0%} | {r.errors} |"
        )
    for line in lags:
        print(f"roll-up: {line}")
    by = {(r.name, r.clients): r for r in results}
    top, low = max(levels), min(levels)
    checks = []
    for name in (PIXEL, CLICK):
        r = by[(name, top)]
        checks.append(
            (
                f"{name} at {top} clients: >= 50% of empty and >= 1,000 req/s",
                r.rate >= max(0.5 * empty[top], 1000),
            )
        )
    r = by[(READS[0], top)]
    checks.append((f"{READS[0]} at {top} clients: >= 50% of empty", r.rate >= 0.5 * empty[top]))
    for name in READS:
        checks.append((f"{name} at {low} clients: p99 < 50 ms", by[(name, low)].pct(0.99) < 50))
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {label}")
    failing = sorted({f"{r.name} at {r.clients} clients" for r in results if r.errors})
    if failing:
        # A route that answered anything but its status measured nothing (and the smoke run in
        # tests/test_bench_smoke.py relies on this to see the served app's routes work).
        sys.exit("routes that answered errors: " + "; ".join(failing))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--clients", default="10,50", help="comma-separated client levels")
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--burst", type=int, default=0, help="then N opens and clicks, and the roll-up's lag")
    asyncio.run(main(parser.parse_args()))
