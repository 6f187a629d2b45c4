"""Campaign throughput against the raw ceiling, per channel, from one run (issue 7).

    .venv/bin/python -m bench.throughput --recipients 100000 --channels EMAIL SMS
    .venv/bin/python -m bench.throughput --recipients 1000000 --channels EMAIL --ceiling-messages 20000

For each channel, against the same sink process: first the raw ceiling (bench.ceiling: a bare client,
no Temporal, no database), then one ONE_TIME campaign of `--recipients` on that channel through the
whole system (API, Temporal dev server, worker, Postgres), timed from execute to COMPLETED. Prints
the ratio, the snapshot time, how long the run waited for its first page (from its first snapshot
chunk, as its history dates them), the worker process's peak RSS during the campaign (sampled from
/proc), the longest history of any run of the campaign's workflow (continue-as-new keeps each
run bounded), and the machine CPU per message outside the sink (bench.cpu): of the bare client,
and of the campaign split by part (worker and API, render processes, Postgres, Temporal). The
audience is bulk-generated in SQL (every customer has an email and a phone).
"""

import argparse
import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio.client import WorkflowHandle

from bench import cpu
from bench.ceiling import EMAIL_CLIENTS, email_ceiling, sms_ceiling
from bench.harness import BenchStack, bench_stack
from db.ledger.reads import campaign_tally
from db.seed import generated_audience, make_templates
from worker import run_service

TENANT = "tenant_throughput"


@dataclass
class Row:
    channel: str
    recipients: int
    ceiling: float
    seconds: float
    sent: int
    snapshot: float
    first_page: float  # from the first snapshot chunk scheduled to the first page scheduled
    rss_mb: float
    max_history: int
    ceiling_cpu: float  # CPU seconds of the bare client (the bench process) during the ceiling run
    ceiling_sent: int
    cpu: dict[str, float]  # CPU seconds of each part during the campaign (bench.cpu.PARTS)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds

    @property
    def ratio(self) -> float:
        return self.rate / self.ceiling

    def per_message_ms(self, seconds: float, messages: int | None = None) -> float:
        return 1000 * seconds / max(messages if messages is not None else self.sent, 1)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def audience(stack: BenchStack, tag: str, n: int) -> tuple[str, str, str]:
    """n customers and a STATIC segment of them, generated in SQL; an EMAIL and an SMS template."""
    segment = await generated_audience(stack.engine, TENANT, tag, n)
    email_t, sms_t = await make_templates(stack.engine, TENANT)
    return segment, email_t, sms_t


async def campaign(
    stack: BenchStack, channel: str, n: int
) -> tuple[float, int, float, float, float, int, dict[str, float]]:
    segment, email_t, sms_t = await audience(stack, channel.lower()[:1], n)
    r = await stack.api.post(
        "/campaigns",
        json={
            "tenantId": TENANT,
            "name": f"throughput {channel}",
            "segmentId": segment,
            "channels": [channel],
            "emailTemplateId": email_t,
            "smsTemplateId": sms_t,
        },
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    handle = stack.client.get_workflow_handle(f"campaign-{cid}")
    peak = rss_mb()
    snapshot = 0.0
    cpu_before = cpu.reading(stack.sink_pid)
    started = time.perf_counter()
    r = await stack.api.post(f"/campaigns/{cid}/execute")
    assert r.status_code == 200, r.text
    while True:
        await asyncio.sleep(0.5)
        peak = max(peak, rss_mb())
        if not snapshot:
            progress = await handle.query("progress")
            if progress["snapshot_complete"]:
                snapshot = time.perf_counter() - started
        if (await stack.api.get(f"/campaigns/{cid}")).json()["status"] == "COMPLETED":
            break
    elapsed = time.perf_counter() - started
    spent = cpu.spent(cpu_before, cpu.reading(stack.sink_pid))
    async with stack.engine.connect() as conn:
        sent = (await campaign_tally(conn, cid)).sent
    # Visibility is eventually consistent: a run that just closed may not be listed yet.
    longest = 0
    runs: list[tuple[datetime, str]] = []
    for _ in range(50):
        async for execution in stack.client.list_workflows(f"WorkflowId = 'campaign-{cid}'"):
            longest = max(longest, execution.history_length)
            runs.append((execution.start_time, execution.run_id))
        if longest:
            break
        await asyncio.sleep(0.1)
    first = stack.client.get_workflow_handle(f"campaign-{cid}", run_id=min(runs)[1])
    return elapsed, sent, snapshot, await first_page(first), peak, longest, spent


async def first_page(handle: WorkflowHandle[Any, Any]) -> float:
    """Seconds from the run's first snapshot chunk to its first page, as the history dates them
    (when each was scheduled): how long the audience waits for its first message."""
    snapshot_at: datetime | None = None
    async for event in handle.fetch_history_events():
        if not event.HasField("activity_task_scheduled_event_attributes"):
            continue
        name = event.activity_task_scheduled_event_attributes.activity_type.name
        at = event.event_time.ToDatetime()
        if name == "snapshot_audience" and snapshot_at is None:
            snapshot_at = at
        elif name == "send_batch" and snapshot_at is not None:
            return (at - snapshot_at).total_seconds()
    return float("nan")


async def main(
    recipients: int, channels: list[str], ceiling_messages: int, worker_processes: int, email_client: str
) -> None:
    rows: list[Row] = []
    async with bench_stack("throughput", TENANT, worker_processes=worker_processes) as stack:
        for channel in channels:
            n = min(ceiling_messages, recipients)
            before = cpu.reading(stack.sink_pid)
            if channel == "EMAIL":
                ceiling = await email_ceiling(
                    stack.settings.smtp_port, n, stack.settings.smtp_pool_size, email_client
                )
            else:
                port = int(stack.settings.sms_url.rsplit(":", 1)[1].split("/")[0])
                ceiling = await sms_ceiling(port, n, stack.settings.sms_in_flight)
            ceiling_cpu = sum(cpu.spent(before, cpu.reading(stack.sink_pid)).values())
            elapsed, sent, snapshot, first, peak, longest, spent = await campaign(stack, channel, recipients)
            rows.append(
                Row(
                    channel,
                    recipients,
                    ceiling.rate,
                    elapsed,
                    sent,
                    snapshot,
                    first,
                    peak,
                    longest,
                    ceiling_cpu,
                    n,
                    spent,
                )
            )
            print(f"{channel}: ceiling {ceiling.rate:,.0f}/s, campaign {sent / elapsed:,.0f}/s", flush=True)
    print(
        "\n| channel | recipients | raw ceiling | campaign (execute → COMPLETED) | ratio | snapshot"
        " | first page | worker peak RSS | longest run history |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r.channel} | {r.recipients:,} | {r.ceiling:,.0f} msg/s | {r.rate:,.0f} msg/s"
            f" ({r.sent:,} in {r.seconds:,.1f} s) | {r.ratio:.0%} | {r.snapshot:.1f} s"
            f" | {r.first_page:.2f} s | {r.rss_mb:.0f} MiB"
            f" | {r.max_history:,} events |"
        )
    print(
        "\nMachine CPU per message, outside the sink (ms): the bare client of the ceiling, then the"
        " campaign by part (the bench process holds the worker and the API)"
    )
    print("\n| channel | bare client | campaign total | " + " | ".join(cpu.PARTS) + " |")
    print("|---|---|---|" + "---|" * len(cpu.PARTS))
    for r in rows:
        parts = " | ".join(f"{r.per_message_ms(r.cpu[p]):.3f}" for p in cpu.PARTS)
        print(
            f"| {r.channel} | {r.per_message_ms(r.ceiling_cpu, r.ceiling_sent):.3f}"
            f" | {r.per_message_ms(sum(r.cpu.values())):.3f} | {parts} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--channels", nargs="+", default=["EMAIL", "SMS"], choices=["EMAIL", "SMS"])
    parser.add_argument("--ceiling-messages", type=int, default=20_000)
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=0,
        help="workers in their own processes, beside the in-process one",
    )
    parser.add_argument(
        "--email-ceiling-client",
        choices=EMAIL_CLIENTS,
        default="session",
        help="the bare SMTP client of the EMAIL ceiling: the campaign's own (default) or aiosmtplib's",
    )
    args = parser.parse_args()
    # On uvloop, as worker.py runs the worker (the ceiling's bare client runs on it too).
    ceiling_client = args.email_ceiling_client
    run_service(
        main(args.recipients, args.channels, args.ceiling_messages, args.worker_processes, ceiling_client)
    )
