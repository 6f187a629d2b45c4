"""Postgres CPU per message of the send path's ledger statements alone (issue 14).

    .venv/bin/python -m bench.ledger_bench [--messages 40000] [--slots 16] [--page 1000]
    .venv/bin/python -m bench.ledger_bench --one-plan   # one plan kept from the first steps on

`bench.throughput` runs everything on two shared cores, so its per-part figures move by ±30 %
from one run to the next and cannot tell a 10 % change in a statement apart from the box's mood.
This bench replays only what a page asks of Postgres, with the real functions of db.ledger and
db.rollups, in a scratch database: steps of `--slots` answers (SENT) and as many claims each, as
the ledger writer group-commits them, and the page's roll-up every `--page` messages. It reads the
CPU of the two Postgres backends (steps, roll-ups) and of the WAL writer from /proc, and prints
microseconds of CPU per message (steps, roll-ups, all) and the WAL bytes per message, which do not
depend on the box's mood at all. Each page's writer has a connection of its own, set up as
LedgerWriter sets it up (db.ledger.sends.prepare_writer; `--one-plan`: one connection for the
whole run, the fault a connection per page prevents); `--session name=value,...` sets session
settings after that, for experiments (`plan_cache_mode=force_custom_plan`: every step planned for
its own arrays). Run it before and after a change, a few times each, on an otherwise idle box.
"""

import argparse
import asyncio
import os
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from bench.harness import scratch_database
from core.ids import new_id
from db import rollups
from db.bench_seed import backend_pid, seed_ledger_run, sent_rows, set_session, wal_bytes_since, wal_position
from db.engine import make_engine
from db.ledger.sends import AnswerRow, Claim, prepare_writer, write_step

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far; 0 once it is gone (a WAL writer of another cluster
    that stopped meanwhile: its share is then left out rather than counted negative)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _wal_writer_pids() -> list[int]:
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if cmd.startswith(b"postgres:") and b"walwriter" in cmd:
            pids.append(int(pid))
    return pids


async def run(
    url: str,
    messages: int,
    slots: int,
    page: int,
    session: str = "",
    itype: str | None = "SENT",
    fresh_plans: bool = True,
) -> dict[str, float]:
    engine = make_engine(url, pool_size=2)
    tenant, campaign, run_id = "tenant_ledger", "campaign_ledger", "campaign_ledger.r1"
    async with engine.begin() as conn:
        await seed_ledger_run(conn, tenant=tenant, campaign=campaign, run=run_id, targets=messages)

    async def page_writer() -> tuple[AsyncConnection, int]:
        """A page's writer connection, set up as LedgerWriter sets it up."""
        conn = await (await engine.connect()).execution_options(isolation_level="AUTOCOMMIT")
        await prepare_writer(conn)
        for setting in filter(None, session.split(",")):
            name, value = setting.split("=", 1)
            await set_session(conn, name, value)
        return conn, await backend_pid(conn)

    conn, pid = await page_writer()
    roller = await engine.connect()
    roller_pid = await backend_pid(roller)
    await roller.commit()
    walwriters = _wal_writer_pids()
    claims = [
        Claim(new_id("delivery"), run_id, f"customer_{i:09d}", "SMS", f"+1555{i:07d}")
        for i in range(messages)
    ]
    step_cpu = rollup_cpu = 0.0
    held: list[Claim] = []
    wal_start = await wal_position(conn)
    pids = [roller_pid, *walwriters]  # the writers' CPU is counted step by step (steps)
    started = {p: _cpu_seconds(p) for p in pids}
    for i in range(0, messages + slots, slots):
        now = datetime.now(UTC)
        answers = [
            AnswerRow(c.id, "SENT", None, None, now, f"SM{c.id}", new_id("interaction"), itype) for c in held
        ]
        held = claims[i : i + slots]
        before = _cpu_seconds(pid)
        await write_step(
            conn, campaign_id=campaign, tenant_id=tenant, answers=answers, released=[], claims=held, at=now
        )
        step_cpu += _cpu_seconds(pid) - before
        if (i // slots) % (page // slots) == 0 or not held:
            before = _cpu_seconds(roller_pid)
            async with roller.begin():
                await rollups.roll_up(roller, campaign_id=campaign)
            rollup_cpu += _cpu_seconds(roller_pid) - before
            if fresh_plans and held:  # the next page's writer, on a connection of its own
                await conn.invalidate()
                await conn.close()
                conn, pid = await page_writer()
    total = step_cpu + sum(max(0.0, _cpu_seconds(p) - started[p]) for p in pids)
    wal = await wal_bytes_since(conn, wal_start)
    # What the statements left must be what a page leaves: every message SENT, each counted once.
    sent = await sent_rows(conn, run_id)
    counted = (await rollups.counters_for(conn, campaign)).get((rollups.ALL, "SENT"), (0, 0))[0]
    if sent != messages or counted != (messages if itype else 0):
        raise SystemExit(f"the ledger is wrong: {sent} SENT rows, {counted} counted, {messages} sent")
    print(f"ledger checked: {sent:,} SENT rows, {counted:,} recipients counted")
    await conn.close()
    await roller.close()
    await engine.dispose()
    per = 1e6 / messages
    return {
        "steps": step_cpu * per,
        "roll-ups": rollup_cpu * per,
        "all (with WAL writer)": total * per,
        "WAL bytes": float(wal) / messages,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--page", type=int, default=1_000)
    parser.add_argument("--session", default="", help="name=value,... set on the writer's session")
    parser.add_argument(
        "--no-interaction",
        action="store_true",
        help="answers count as nothing (not SENT): no first-of-a-kind row, no counter delta; a floor",
    )
    parser.add_argument(
        "--one-plan", action="store_true", help="one connection's plans for the whole run (no page starts)"
    )
    args = parser.parse_args()
    with scratch_database("ledger") as url:
        itype = None if args.no_interaction else "SENT"
        figures = asyncio.run(
            run(url, args.messages, args.slots, args.page, args.session, itype, not args.one_plan)
        )
    print(f"Postgres CPU per message, {args.messages:,} messages, {args.slots} per step (µs):")
    for name, value in figures.items():
        print(f"  {name}: {value:.1f}")


if __name__ == "__main__":
    main()
