"""Benchmark: GET /campaigns/:id/stats on a campaign with 1,000,000 interactions, and recording one.

    .venv/bin/python -m bench.stats_bench [--admin-url URL] [--interactions N] [--calls N] [--keep]

It creates a scratch database on the local Postgres (`--admin-url`, default
postgresql://postgres@127.0.0.1:5432/postgres), migrates it, and builds one COMPLETED campaign:
customers, deliveries and N interactions in bulk (`INSERT ... SELECT generate_series`), inserted as
rolled up, then the roll-ups (`interaction_firsts`, `campaign_counters`, `campaign_hourly`) are
computed in bulk SQL with the same meaning as `db.rollups` (first interaction per recipient and
type, per channel and across channels; events per type; hourly first-of-a-kind recipients) and
checked against a full scan. Then, through the real ASGI app (httpx ASGITransport, JWT and all):
/stats, GET /campaigns/:id, /interactions pages, and the tracking endpoints that record one
OPENED / CLICKED interaction, on the big campaign and on a small one (recording is O(1)).
A naive scan of the interactions is timed for contrast. The database is dropped at the end.
"""

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import issue_token
from api.deps import AppState
from api.main import create_app
from core.settings import Settings
from db.bench_seed import InteractionSlice, StatsSeed, bulk_roll_up, naive_stats, seed_stats_campaign
from db.engine import make_engine
from db.migrate import upgrade
from providers.tracking import tracking_links

TENANT = "tenant_bench"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


Slice = InteractionSlice


def plan(total: int, recipients: int) -> list[Slice]:
    """A realistic mix summing exactly to `total`; opens take whatever the other types leave."""
    r = recipients
    send = "c * 7200.0 / :r"  # sends spread over two hours
    slices = [
        Slice("se", "SENT", "EMAIL", r, "g", send),
        Slice("ss", "SENT", "SMS", int(r * 0.4), "g", f"{send} + 60"),
        Slice("de", "DELIVERED", "EMAIL", int(r * 0.98), "g", f"{send} + 5"),
        Slice("be", "BOUNCED", "EMAIL", r - int(r * 0.98), f"g + {int(r * 0.98)}", f"{send} + 30"),
        Slice("ds", "DELIVERED", "SMS", int(r * 0.39), "g", f"{send} + 70"),
        Slice("fs", "FAILED", "SMS", int(r * 0.4) - int(r * 0.39), f"g + {int(r * 0.39)}", f"{send} + 90"),
        Slice(
            "ce",
            "CLICKED",
            "EMAIL",
            int(r * 0.04),
            f"g % {int(r * 0.03)}",
            "3600 + random() * 169200",
            "jsonb_build_object('linkId', 'link_1', 'linkUrl', 'https://example.com/offer')",
        ),
        Slice("ve", "CONVERTED", "EMAIL", int(r * 0.005), "g", "7200 + random() * 165600"),
        Slice("ue", "UNSUBSCRIBED", "EMAIL", int(r * 0.001), "g * 7", "3600 + random() * 169200"),
    ]
    rest = total - sum(s.n for s in slices)
    if rest < 0:
        raise SystemExit("--interactions too small for the mix")
    slices.append(Slice("oe", "OPENED", "EMAIL", rest, f"g % {int(r * 0.45)}", "600 + random() * 172200"))
    return slices


@dataclass(frozen=True)
class BenchCampaign:
    id: str
    tag: str  # short prefix of its customer, delivery and interaction ids
    recipients: int
    interactions: int

    def email_delivery(self, customer: int) -> str:
        return f"delivery_e{self.tag}{customer}"


async def build_campaign(engine: AsyncEngine, total: int, recipients: int) -> BenchCampaign:
    tag = uuid.uuid4().hex[:6]
    campaign = BenchCampaign(f"campaign_bench{tag}", tag, recipients, total)
    start = (datetime.now(UTC) - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    seed = StatsSeed(campaign.id, TENANT, recipients, start, tag)
    async with engine.begin() as conn:
        await seed_stats_campaign(conn, seed, plan(total, recipients))
    return campaign


@dataclass
class Row:
    name: str
    samples: list[float]

    def cells(self) -> list[str]:
        ms = sorted(s * 1000 for s in self.samples)
        p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
        return [self.name, str(len(ms)), f"{statistics.median(ms):.2f}", f"{p95:.2f}", f"{ms[-1]:.2f}"]


async def timed(n: int, call: Callable[[int], Awaitable[None]]) -> list[float]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        await call(i)
        samples.append(time.perf_counter() - t0)
    return samples


def table(rows: list[Row]) -> str:
    head = ["operation", "calls", "median ms", "p95 ms", "max ms"]
    body = [r.cells() for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return (
            "| "
            + " | ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])
            + " |"
        )

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(b) for b in body)])


async def measure(
    engine: AsyncEngine, settings: Settings, big_campaign: BenchCampaign, small: BenchCampaign, calls: int
) -> list[Row]:
    big = big_campaign.id
    app = create_app(settings, AppState(settings=settings, engine=engine, control=None))
    headers = {"Authorization": f"Bearer {issue_token(settings, 'bench', [TENANT])}"}
    links = tracking_links(settings.public_url, settings.tracking_secret)
    rows: list[Row] = []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=settings.public_url, headers=headers
    ) as api:

        async def get(path: str, **params: Any) -> dict[str, Any]:
            r = await api.get(path, params=params)
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body

        for _ in range(20):  # warm-up: connection pool, compiled templates, plan caches
            await get(f"/campaigns/{big}/stats")
            await get(f"/campaigns/{big}")
        stats = await get(f"/campaigns/{big}/stats")
        campaign = await get(f"/campaigns/{big}")
        assert all(stats[k] == campaign[k] for k in ("sentCount", "openedCount", "clickedCount"))
        assert sum(b["opened"] for b in stats["timeline"]) == stats["openedCount"]

        async def stats_call(_: int) -> None:
            await get(f"/campaigns/{big}/stats")

        label = f"GET /campaigns/:id/stats ({big_campaign.interactions:,} interactions)"
        rows.append(Row(label, await timed(calls, stats_call)))

        async def campaign_call(_: int) -> None:
            await get(f"/campaigns/{big}")

        rows.append(Row("GET /campaigns/:id (same counts)", await timed(calls, campaign_call)))

        async def page_call(i: int) -> None:
            await get(f"/campaigns/{big}/interactions", skip=(i % 4) * 25, take=25)

        rows.append(Row("GET /interactions take=25 (exact total)", await timed(50, page_call)))

        async def clicked_call(i: int) -> None:
            await get(f"/campaigns/{big}/interactions", type="CLICKED", skip=(i % 4) * 1000, take=1000)

        rows.append(Row("GET /interactions type=CLICKED take=1000", await timed(20, clicked_call)))

        def record(campaign: BenchCampaign, kind: str) -> Callable[[int], Awaitable[None]]:
            picks = random.sample(range(campaign.recipients), calls)

            async def call(i: int) -> None:
                delivery = campaign.email_delivery(picks[i])
                if kind == "open":
                    url, expected = links.open_url(campaign.id, delivery), 200
                else:
                    url = links.click_url(campaign.id, delivery, "link_1", "https://example.com/offer")
                    expected = 302
                r = await api.get(url)
                assert r.status_code == expected, r.text

            return call

        size = f"{big_campaign.recipients:,} recipients"
        rows.append(Row(f"record OPENED via /t/o ({size})", await timed(calls, record(big_campaign, "open"))))
        rows.append(
            Row(f"record CLICKED via /t/c ({size})", await timed(calls, record(big_campaign, "click")))
        )
        small_size = f"{small.recipients:,} recipients"
        rows.append(Row(f"record OPENED via /t/o ({small_size})", await timed(calls, record(small, "open"))))
        after = await get(f"/campaigns/{big}/stats")
        assert after["sentCount"] == stats["sentCount"]
        assert stats["openedCount"] < after["openedCount"] <= stats["openedCount"] + calls

    async with engine.connect() as conn:

        async def naive(_: int) -> None:
            await naive_stats(conn, big)

        rows.append(Row("contrast: stats by scanning interactions", await timed(3, naive)))
    return rows


async def main(args: argparse.Namespace) -> None:
    name = f"campaigns_bench_{uuid.uuid4().hex[:8]}"
    admin = args.admin_url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + "/" + name
    try:
        upgrade(url)
        engine = make_engine(url, pool_size=5)
        recipients = max(1000, int(args.interactions * 0.3))
        t0 = time.perf_counter()
        big = await build_campaign(engine, args.interactions, recipients)
        small = await build_campaign(engine, max(args.calls * 3, 1000), max(args.calls, 334))
        t1 = time.perf_counter()
        await bulk_roll_up(engine, big.id)
        await bulk_roll_up(engine, small.id)
        t2 = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        print(f"database {name}: {args.interactions:,} interactions over {recipients:,} recipients")
        print(f"  bulk load {t1 - t0:.1f} s, bulk roll-up + consistency check {t2 - t1:.1f} s")
        settings = Settings(environment="test", database_url=url, public_url="http://bench.local")
        rows = await measure(engine, settings, big, small, args.calls)
        await engine.dispose()
        print(table(rows))
        median = statistics.median(rows[0].samples) * 1000
        print(f"/stats median {median:.2f} ms: {'PASS' if median < 50 else 'FAIL'} (target < 50 ms)")
    finally:
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print(f"kept database {url}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--admin-url", default=DEFAULT_ADMIN_URL, help="a Postgres URL to create the scratch DB"
    )
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
