"""Tracking under a burst: the group-commit writer and the background roll-up (issue 19).

- /stats after a burst of opens and clicks equals the interactions table, while the roll-up lags
  and once it has caught up; two roll-ups at once (two API processes) count every row once.
  `CAMPAIGNS_TRACKING_BURST` sets the burst's size (default small; the 100,000 burst is
  `python -m bench.api_bench --burst 100000`).
- No acknowledged event is lost when the API process (a real uvicorn) is SIGKILLed mid-burst.
"""

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text

from api.rollup import BackgroundRollup
from providers.tracking import TrackingLinks
from tests.conftest import Stack, StackFactory
from tests.test_stats import Ledger, build_ledger

BURST = int(os.environ.get("CAMPAIGNS_TRACKING_BURST", "600"))
ROOT = Path(__file__).resolve().parent.parent


async def _ledger(stack: Stack, recipients: int) -> Ledger:
    now = datetime.now(UTC)
    return await build_ledger(
        stack, targets=recipients, email_sent=recipients, sms_sent=0, sent_at=lambda i: now
    )


async def _table(stack: Stack, campaign_id: str) -> dict[str, tuple[int, int]]:
    """{type: (distinct recipients, rows)} of the opens and clicks, counted from the table itself."""
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT type, count(DISTINCT customer_id), count(*) FROM interactions"
                " WHERE campaign_id = :c AND type IN ('OPENED', 'CLICKED') GROUP BY type"
            ),
            {"c": campaign_id},
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}


async def _counters(stack: Stack, campaign_id: str) -> dict[str, tuple[int, int]]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT type, recipients, events FROM campaign_counters"
                " WHERE campaign_id = :c AND channel = 'ALL' AND type IN ('OPENED', 'CLICKED')"
            ),
            {"c": campaign_id},
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def _agrees(stats: dict[str, Any], table: dict[str, tuple[int, int]]) -> bool:
    email = stats["byChannel"]["EMAIL"]
    return bool(
        stats["openedCount"] == email["opened"] == table.get("OPENED", (0, 0))[0]
        and stats["clickedCount"] == email["clicked"] == table.get("CLICKED", (0, 0))[0]
    )


async def test_stats_after_a_burst_equal_the_interactions_table(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False, tracking_dedupe_seconds=0)
    ledger = await _ledger(stack, 40)
    rng = random.Random(19)
    urls = [ledger.links(rng.randrange(40), "o" if i % 2 else "c")[0] for i in range(BURST)]
    # Two roll-ups at once, as two API processes run them: each row must still count once.
    rollups = [BackgroundRollup(stack.engine, interval=0.02, batch=50) for _ in range(2)]
    for rollup in rollups:
        rollup.start()
    gate = asyncio.Semaphore(50)

    async def hit(url: str) -> None:
        async with gate:
            r = await stack.api.get(url)
            assert r.status_code in (200, 302), r.text

    try:
        await asyncio.gather(*(hit(url) for url in urls))
        table = await _table(stack, ledger.campaign_id)
        assert sum(rows for _, rows in table.values()) == BURST  # every acknowledged event is stored
        # Exact while the roll-up may still lag...
        assert _agrees(await ledger._stats(), table)
        started = time.monotonic()
        while (await ledger._stats())["rollupPending"]:
            assert time.monotonic() - started < 30, "the roll-up did not catch up"
            await asyncio.sleep(0.02)
        lag = time.monotonic() - started
    finally:
        for rollup in rollups:
            await rollup.stop()
    # ...and once it has caught up, from the counters alone, each row counted once.
    stats = await ledger.stats()
    assert stats["rollupPending"] == 0 and _agrees(stats, table), (stats, table)
    assert await _counters(stack, ledger.campaign_id) == table
    r = await stack.call("GET", f"/campaigns/{ledger.campaign_id}/interactions", params={"type": "CLICKED"})
    assert r.json()["meta"]["total"] == table["CLICKED"][1]
    print(f"burst of {BURST}: roll-up caught up {lag:.2f} s after the last acknowledgement")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _wait_port(port: int) -> None:
    for _ in range(300):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"the API never listened on {port}")


def _start_api(stack: Stack, port: int) -> "subprocess.Popen[bytes]":
    cfg = stack.settings
    env = {
        **os.environ,
        "CAMPAIGNS_ENVIRONMENT": "test",
        "CAMPAIGNS_DATABASE_URL": cfg.database_url or "",
        "CAMPAIGNS_TEMPORAL_ADDRESS": cfg.temporal_address,
        "CAMPAIGNS_TASK_QUEUE": cfg.task_queue,
        "CAMPAIGNS_TRACKING_SECRET": cfg.tracking_secret,
        "CAMPAIGNS_TRACKING_DEDUPE_SECONDS": "0",
        "CAMPAIGNS_RATE_LIMIT_TRACKING_IP_PER_SECOND": "0",
        "CAMPAIGNS_RATE_LIMIT_IP_PER_SECOND": "0",
        "CAMPAIGNS_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_no_acknowledged_click_is_lost_when_the_api_is_killed(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    ledger = await _ledger(stack, 1)
    delivery = ledger.email_delivery[0]
    port = _free_port()
    links = TrackingLinks(f"http://127.0.0.1:{port}", stack.settings.tracking_secret)
    # Each click names its own link, so each acknowledgement can be found in the table.
    urls = [
        links.click_url(ledger.campaign_id, delivery, f"link_{i}", f"https://example.com/{i}")
        for i in range(20_000)
    ]
    api = _start_api(stack, port)
    acknowledged: list[str] = []
    enough = asyncio.Event()
    failed = 0
    try:
        await _wait_port(port)
        pending = iter(enumerate(urls))

        async def client(session: aiohttp.ClientSession) -> None:
            nonlocal failed
            for i, url in pending:
                try:
                    async with session.get(url, allow_redirects=False) as r:
                        await r.read()
                        if r.status == 302:
                            acknowledged.append(f"link_{i}")
                            if len(acknowledged) >= 300:
                                enough.set()
                except aiohttp.ClientError:
                    failed += 1

        async def killer() -> None:
            await asyncio.wait_for(enough.wait(), 60)
            api.send_signal(signal.SIGKILL)  # mid-burst: dozens of clicks in flight

        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=50), timeout=timeout
        ) as session:
            await asyncio.gather(killer(), *(client(session) for _ in range(50)))
    finally:
        if api.poll() is None:
            api.kill()
        api.wait(10)
    assert api.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 300 and failed > 0  # killed during the burst, not after it
    async with stack.engine.connect() as conn:
        stored = set(
            (
                await conn.execute(
                    text(
                        "SELECT metadata->>'linkId' FROM interactions"
                        " WHERE campaign_id = :c AND type = 'CLICKED'"
                    ),
                    {"c": ledger.campaign_id},
                )
            ).scalars()
        )
    assert set(acknowledged) <= stored, sorted(set(acknowledged) - stored)[:10]
    # What was stored, acknowledged or not, is counted once by the next roll-up.
    await BackgroundRollup(stack.engine).run_once()
    table = await _table(stack, ledger.campaign_id)
    assert await _counters(stack, ledger.campaign_id) == table and table["CLICKED"][1] == len(stored)
