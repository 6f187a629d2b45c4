"""A 1,000,000-recipient audience: snapshot time and the worker's memory stay bounded.

    .venv/bin/python -m bench.audience_bench --recipients 1000000 --pages 20

Builds the audience in a scratch database with set-based SQL, then runs the real activities the
workflow runs (outside Temporal, to time them alone): `snapshot_audience` chunk after chunk over
the whole segment, then `send_batch` for the first `--pages` pages against in-process sinks. Prints
the time per chunk and per page and the process's peak RSS after each phase, which must not grow
with the audience.
"""

import argparse
import asyncio
import resource
import time
from typing import Any

from temporalio.testing import ActivityEnvironment

from activities.deps import ActivityDeps
from activities.sending import SendingActivities
from activities.snapshot import SnapshotActivities
from bench.harness import scratch_database
from core.messages import SendBatchInput, SnapshotInput
from core.settings import Settings
from db.bench_seed import build_big_audience
from db.engine import make_engine
from devstack.sinks import SmsSink, SmtpSink


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main(n: int, pages: int) -> None:
    with scratch_database("audbench") as url:
        await run(url, n, pages)


async def run(url: str, n: int, pages: int) -> None:
    # In-process sinks here: this benchmark is about memory and snapshot time, not throughput.
    smtp = SmtpSink().start()
    sms = await SmsSink().start()
    try:
        t0 = time.perf_counter()
        build_big_audience(url, n)
        print(f"audience of {n:,} built in {time.perf_counter() - t0:.1f} s")
        settings = Settings(environment="test", database_url=url, smtp_port=smtp.port, sms_url=sms.url)
        engine = make_engine(url, pool_size=settings.send_concurrency + 4)
        deps = ActivityDeps.build(settings, engine)
        snap = SnapshotActivities(deps)
        env = ActivityEnvironment()  # the real activity context (heartbeats) without a server
        base_rss = rss_mib()
        t0 = time.perf_counter()
        after: str | None = None
        chunks = 0
        while True:
            result: Any = await env.run(
                snap.snapshot_audience,
                SnapshotInput(
                    campaign_id="campaign_big",
                    tenant_id="tenant_big",
                    run_id="campaign_big.r1",
                    run_number=1,
                    after=after,
                ),
            )
            chunks += 1
            after = result.last_customer_id
            if result.done:
                break
        took = time.perf_counter() - t0
        print(
            f"snapshot: {result.target_count:,} recipients in {chunks} chunks of"
            f" {settings.snapshot_chunk_size:,}: {took:.1f} s ({took / chunks * 1000:.0f} ms/chunk);"
            f" peak RSS {base_rss:.0f} -> {rss_mib():.0f} MiB"
        )
        send = SendingActivities(deps)
        cursor: str | None = None
        t0 = time.perf_counter()
        for _ in range(pages):
            page: Any = await env.run(
                send.send_batch,
                SendBatchInput(
                    campaign_id="campaign_big",
                    tenant_id="tenant_big",
                    run_id="campaign_big.r1",
                    after=cursor,
                    epoch=1,
                ),
            )
            cursor = page.next_cursor
        took = time.perf_counter() - t0
        print(
            f"send: {pages} pages of {settings.batch_size} = {smtp.count():,} emails in {took:.1f} s"
            f" ({smtp.count() / took:.0f}/s, sink in-process); peak RSS {rss_mib():.0f} MiB"
        )
        await deps.close()
        await engine.dispose()
    finally:
        smtp.stop()
        await sms.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.recipients, args.pages))
