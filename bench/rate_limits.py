"""Rate limits held across worker processes, and shared fairly by tenants (issue 17).

    .venv/bin/python -m bench.rate_limits --rate 50

A dev stack (scratch database, Temporal dev server, the API in this process) with TWO worker
processes and an SMTP sink in its own process that writes down when each message arrived. The
`email` account is limited to `--rate` messages per second. Three campaigns, one after the other:

1. tenant B sends `--small` messages with the account to itself (its time alone);
2. tenant A starts `--big` messages; after a warm-up, a `--window` second window of what the sink
   received must hold within 5% of the rate, although two workers send;
3. while A still sends, tenant B sends `--small` again: with equal weights its share is half the
   account, and it must finish within twice the time that share takes (`small / (rate / 2)`), not
   wait behind A's campaign.

A is then cancelled. Prints the figures and whether each acceptance line holds (exit status 1 if
one does not).
"""

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.auth import issue_token
from api.deps import AppState
from api.lifecycle import CampaignControl
from api.main import create_app
from bench.harness import free_port, scratch_database, start_worker_process, wait_port
from core.binaries import find_binary
from core.constants import SEARCH_ATTRIBUTES
from core.settings import Settings
from db.bench_seed import seed_static_audience
from db.engine import make_engine

TENANT_A, TENANT_B, TENANT_B_ALONE = "tenant_rl_a", "tenant_rl_b", "tenant_rl_b_alone"
TENANT_WARM = "tenant_rl_warm"
TOLERANCE = 0.05


class _TimedSink:
    """An SMTP sink that appends `arrival-time recipient` for every message to a file."""

    def __init__(self, path: str) -> None:
        self._out = open(path, "a", buffering=1)  # open for the process's life

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # aiosmtpd hook
        now = time.time()
        for rcpt in envelope.rcpt_tos:
            self._out.write(f"{now:.6f} {rcpt}\n")
        return "250 Message accepted for delivery"


def run_sink(port: int, path: str) -> None:
    Controller(_TimedSink(path), hostname="127.0.0.1", port=port, ready_timeout=10).start()
    while True:
        time.sleep(3600)


def arrivals(path: Path, tenant: str | None = None) -> list[float]:
    """Arrival times of the messages the sink received (for one tenant's domain, or all)."""
    suffix = None if tenant is None else f"@{tenant.replace('_', '-')}.example.com"
    times = []
    for line in path.read_text().splitlines():
        at, rcpt = line.split(" ", 1)
        if suffix is None or rcpt.endswith(suffix):
            times.append(float(at))
    return times


@dataclass
class Stack:
    engine: AsyncEngine
    api: httpx.AsyncClient
    sink_file: Path


@asynccontextmanager
async def stack(rate: float, workers: int) -> AsyncIterator[Stack]:
    with scratch_database("ratelimits") as url:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=find_binary("temporal"),
            data_converter=pydantic_data_converter,
            search_attributes=SEARCH_ATTRIBUTES,
        )
        smtp_port = free_port()
        sink_file = Path(f"/tmp/bench-rate-limits-{os.getpid()}.log")
        await asyncio.to_thread(sink_file.write_text, "")
        sink = multiprocessing.get_context("spawn").Process(
            target=run_sink, args=(smtp_port, str(sink_file)), daemon=True
        )
        sink.start()
        await wait_port(smtp_port)
        limits = {"email": {"perSecond": rate}}
        cfg = Settings(
            environment="test",
            database_url=url,
            task_queue="ratelimits",
            temporal_address=env.client.service_client.config.target_host,
            smtp_port=smtp_port,
            sms_url="http://127.0.0.1:9/messages",  # no SMS is sent
            sms_token="dev-sms-token",
            rate_limits=limits,
        )
        engine = make_engine(url, pool_size=4)
        procs = [start_worker_process(cfg) for _ in range(workers)]
        app = create_app(cfg, AppState(cfg, engine, CampaignControl(env.client, cfg.task_queue)))
        token = issue_token(cfg, "bench", [TENANT_A, TENANT_B, TENANT_B_ALONE, TENANT_WARM])
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://bench",
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            ) as api:
                yield Stack(engine, api, sink_file)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
            sink.kill()
            await engine.dispose()
            await env.shutdown()
            await asyncio.to_thread(sink_file.unlink, True)


async def campaign(s: Stack, tenant: str, n: int) -> str:
    """A STATIC segment of n customers (generated in SQL), an EMAIL template and a campaign."""
    async with s.engine.begin() as conn:
        segment, template = await seed_static_audience(conn, tenant, n)
    body: dict[str, Any] = {
        "tenantId": tenant,
        "name": f"rate limits {tenant}",
        "segmentId": segment,
        "channels": ["EMAIL"],
        "emailTemplateId": template,
    }
    r = await s.api.post("/campaigns", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def execute(s: Stack, cid: str) -> None:
    r = await s.api.post(f"/campaigns/{cid}/execute")
    assert r.status_code == 200, r.text


async def until(s: Stack, cid: str, *statuses: str, timeout: float = 600) -> float:
    """Wait for one of `statuses`; the time.time() it was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await s.api.get(f"/campaigns/{cid}")).json()["status"] in statuses:
            return time.time()
        await asyncio.sleep(0.1)
    raise TimeoutError(f"campaign {cid} never reached {statuses}")


async def main(rate: float, big: int, small: int, window: float, warmup: float, workers: int) -> bool:
    async with stack(rate, workers) as s:
        warm = await campaign(s, TENANT_WARM, 5)
        b_alone = await campaign(s, TENANT_B_ALONE, small)
        a = await campaign(s, TENANT_A, big)
        b = await campaign(s, TENANT_B, small)
        # Both workers polling and the first workflow's start paid before anything is timed.
        await execute(s, warm)
        await until(s, warm, "COMPLETED")

        started = time.time()
        await execute(s, b_alone)
        alone_seconds = await until(s, b_alone, "COMPLETED") - started
        await asyncio.sleep(1.0)  # the lanes of B drop out of the split

        await execute(s, a)
        for _ in range(600):  # A's first message reaches the sink
            if arrivals(s.sink_file, TENANT_A):
                break
            await asyncio.sleep(0.1)
        w0 = arrivals(s.sink_file, TENANT_A)[0] + warmup
        await asyncio.sleep(max(0.0, w0 + window - time.time()) + 0.5)
        in_window = [t for t in arrivals(s.sink_file) if w0 <= t < w0 + window]
        window_rate = len(in_window) / window
        per_second = [sum(1 for t in in_window if w0 + i <= t < w0 + i + 1) for i in range(int(window))]

        started = time.time()
        await execute(s, b)
        b_done = await until(s, b, "COMPLETED") - started
        b_times = arrivals(s.sink_file, TENANT_B)
        both = [t for t in arrivals(s.sink_file) if b_times[0] <= t <= b_times[-1]]
        both_rate = len(both) / max(b_times[-1] - b_times[0], 1e-9)
        a_during_b = len([t for t in arrivals(s.sink_file, TENANT_A) if b_times[0] <= t <= b_times[-1]])

        r = await s.api.post(f"/campaigns/{a}/cancel")
        # At a tiny size (smoke runs) A may have finished already: nothing left to cancel.
        assert r.status_code == 200 or r.json().get("currentStatus") == "COMPLETED", r.text
        if r.status_code == 200:
            await until(s, a, "CANCELLED", timeout=120)
        a_sent = len(arrivals(s.sink_file, TENANT_A))

    at_share = small / (rate / 2)
    rate_ok = abs(window_rate - rate) <= TOLERANCE * rate
    fair_ok = b_done <= 2 * at_share
    print(f"\nRate limit {rate:g} msg/s on `email`, {workers} worker processes, equal weights\n")
    print("| measure | figure | acceptance |")
    print("|---|---|---|")
    print(
        f"| {window:g} s window of the SMTP sink, A alone ({warmup:g} s warm-up) | {len(in_window)} messages,"
        f" {window_rate:.2f} msg/s ({(window_rate - rate) / rate:+.1%}) | within ±5% of {rate:g}:"
        f" {'yes' if rate_ok else 'NO'} |"
    )
    print(
        f"| B alone, {small} messages (execute → COMPLETED) | {alone_seconds:.1f} s | (all of the account) |"
    )
    print(
        f"| B beside A ({big:,} messages), {small} messages (execute → COMPLETED) | {b_done:.1f} s"
        f" | within 2 x {at_share:.1f} s (alone at its share): {'yes' if fair_ok else 'NO'} |"
    )
    print(
        f"| while B sent: aggregate at the sink | {both_rate:.2f} msg/s (A {a_during_b}, B {len(b_times)})"
        " | - |"
    )
    print(f"| A sent before its cancel | {a_sent:,} | - |")
    print(f"\nMessages at the sink in each second of the window: {per_second}")
    return rate_ok and fair_ok


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--big", type=int, default=20_000)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--report-only", action="store_true", help="exit 0 whatever the figures (smoke runs at tiny sizes)"
    )
    args = parser.parse_args()
    ok = asyncio.run(main(args.rate, args.big, args.small, args.window, args.warmup, args.workers))
    sys.exit(0 if ok or args.report_only else 1)
