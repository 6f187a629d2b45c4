"""The shared rate limiter (db.rate_limits) and a worker's throttle over it, on the real Postgres.

Grants are measured against wall-clock time: what all callers together were granted may never pass
rate x elapsed + the account's burst, and must come close to it (a limiter that grants nothing
would pass the first check alone).
"""

import asyncio
import contextlib
import time
import uuid
from collections import Counter

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.send.throttle import Throttle
from core.settings import AccountRateLimit
from db.engine import make_engine
from db.rate_limits import ACCOUNT_BURST_SECONDS, grant, granted_on, lanes


def account() -> str:
    return f"acct_{uuid.uuid4().hex[:10]}"


async def ask(
    engine: AsyncEngine,
    acct: str,
    tenant: str,
    want: int,
    *,
    weight: float = 1.0,
    per_second: float | None = None,
    per_day: int | None = None,
) -> int:
    async with engine.begin() as conn:
        got = await grant(
            conn,
            account=acct,
            tenant_id=tenant,
            want=want,
            weight=weight,
            per_second=per_second,
            per_day=per_day,
        )
    return got.granted


async def hammer(
    engine: AsyncEngine, acct: str, tenant: str, seconds: float, *, want: int = 3, **limits: float
) -> int:
    """Ask as often as the database answers for `seconds`; the tokens granted."""
    total = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        total += await ask(engine, acct, tenant, want, **limits)  # type: ignore[arg-type]
        await asyncio.sleep(0.002)
    return total


async def test_grants_never_exceed_rate_times_elapsed_plus_burst(engine: AsyncEngine) -> None:
    acct, rate = account(), 40.0
    started = time.monotonic()
    granted = sum(
        await asyncio.gather(*(hammer(engine, acct, "tenant_a", 1.5, per_second=rate) for _ in range(4)))
    )
    elapsed = time.monotonic() - started
    burst = rate * ACCOUNT_BURST_SECONDS
    assert granted <= rate * elapsed + burst
    assert granted >= rate * 1.5 * 0.8, granted


async def test_a_lone_tenant_gets_the_whole_account(engine: AsyncEngine) -> None:
    acct = account()
    await ask(engine, acct, "tenant_a", 100, per_second=50)  # the opening burst, left out
    granted = await hammer(engine, acct, "tenant_a", 1.5, per_second=50)
    assert 50 * 1.5 * 0.85 <= granted <= 50 * 1.5 * 1.15, granted


async def test_two_tenants_on_one_account_split_it_by_weight(engine: AsyncEngine) -> None:
    acct, rate = account(), 60.0
    for tenant, weight in (("tenant_a", 2.0), ("tenant_b", 1.0)):  # both sharing, bursts spent
        await ask(engine, acct, tenant, 100, weight=weight, per_second=rate)
    started = time.monotonic()
    a, b = await asyncio.gather(
        hammer(engine, acct, "tenant_a", 2.0, per_second=rate, weight=2.0),
        hammer(engine, acct, "tenant_b", 2.0, per_second=rate, weight=1.0),
    )
    elapsed = time.monotonic() - started
    assert a + b <= rate * elapsed + rate * ACCOUNT_BURST_SECONDS
    assert a + b >= rate * 2.0 * 0.85, (a, b)
    assert 1.6 <= a / b <= 2.5, (a, b)
    async with engine.connect() as conn:
        assert [(lane.tenant_id, lane.weight) for lane in await lanes(conn, acct)] == [
            ("tenant_a", 2.0),
            ("tenant_b", 1.0),
        ]


async def test_the_day_limit_stops_grants_until_the_next_utc_day(engine: AsyncEngine) -> None:
    acct = account()
    granted = [await ask(engine, acct, "tenant_a", 7, per_day=30) for _ in range(6)]
    assert granted == [7, 7, 7, 7, 2, 0]
    async with engine.begin() as conn:
        last = await grant(
            conn, account=acct, tenant_id="tenant_b", want=5, weight=1.0, per_second=None, per_day=30
        )
        day, total = await granted_on(conn, acct)
    assert last.granted == 0 and last.day_exhausted  # another tenant on the account: its day too
    assert 0 < last.wait_seconds <= 86_400
    assert total == 30 and day is not None


async def test_many_connections_racing_never_over_grant(database_url: str) -> None:
    """Twenty connections, as twenty workers would, against a day limit: a lost update would grant
    more than the limit."""
    racing = make_engine(database_url, pool_size=20)
    acct = account()
    try:

        async def drain(tenant: str) -> int:
            total = 0
            while True:
                got = await ask(racing, acct, tenant, 7, per_day=500, per_second=5000)
                if got == 0:
                    return total
                total += got

        totals = await asyncio.gather(*(drain(f"tenant_{n % 3}") for n in range(20)))
    finally:
        await racing.dispose()
    assert sum(totals) == 500
    async with racing.connect() as conn:
        assert (await granted_on(conn, acct))[1] == 500


async def test_two_worker_throttles_hold_the_account_rate_together(database_url: str) -> None:
    """Two throttles on their own engines (two workers) sending for one tenant: together they get
    the account's rate, not twice it."""
    acct, rate = account(), 30.0
    limits = {acct: AccountRateLimit(per_second=rate)}
    engines = [make_engine(database_url, pool_size=2) for _ in range(2)]
    throttles = [Throttle(e, limits) for e in engines]
    sent: Counter[int] = Counter()
    try:
        await throttles[0].acquire(acct, "tenant_a")  # the opening burst, left out
        await asyncio.sleep(0.3)
        started = time.monotonic()

        async def slot(n: int) -> None:
            while time.monotonic() - started < 2.0:
                assert await throttles[n % 2].acquire(acct, "tenant_a")
                sent[n % 2] += 1

        await asyncio.gather(*(slot(n) for n in range(8)))
        elapsed = time.monotonic() - started
    finally:
        for e in engines:
            await e.dispose()
    total = sum(sent.values())
    assert total <= rate * elapsed + 2 * rate * ACCOUNT_BURST_SECONDS, sent
    assert total >= rate * 2.0 * 0.8, sent
    assert min(sent.values()) > 0, sent  # both workers sent
    assert throttles[0].rate(acct, "tenant_a") == pytest.approx(rate)


async def test_a_throttle_waiting_on_a_used_up_day_stops_when_halted_or_cancelled(
    engine: AsyncEngine,
) -> None:
    acct = account()
    throttle = Throttle(engine, {acct: AccountRateLimit(per_day=1)})
    assert await throttle.acquire(acct, "tenant_a")
    halted = asyncio.Event()

    async def wait(seconds: float) -> bool:
        try:
            await asyncio.wait_for(halted.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False

    waiting = asyncio.create_task(throttle.acquire(acct, "tenant_a", wait=wait))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # the day is used up: it waits, it does not fail
    assert throttle.rate(acct, "tenant_a") == 0.0
    halted.set()
    assert await asyncio.wait_for(waiting, 1) is False
    cancelled = asyncio.create_task(throttle.acquire(acct, "tenant_a"))
    await asyncio.sleep(0.2)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(cancelled, 1)


async def test_a_worker_asks_for_batches_it_can_spend_so_a_day_limit_is_not_wasted(
    engine: AsyncEngine,
) -> None:
    """Granted tokens count against the day whether spent or not: ten messages, then the page ends,
    must not have taken a big batch of the day with them."""
    acct = account()
    throttle = Throttle(engine, {acct: AccountRateLimit(per_day=1000)})
    for _ in range(10):
        assert await throttle.acquire(acct, "tenant_a")
    async with engine.connect() as conn:
        _, granted = await granted_on(conn, acct)
    assert 10 <= granted <= 20


async def test_an_account_without_limits_never_touches_the_database() -> None:
    nowhere = make_engine("postgresql://nobody@127.0.0.1:1/none")
    throttle = Throttle(nowhere, {"email": AccountRateLimit(per_second=5)})
    started = time.monotonic()
    assert all([await throttle.acquire("sms", "tenant_a") for _ in range(10_000)])
    assert time.monotonic() - started < 1.0
    assert not throttle.limited("sms") and throttle.limited("email")
    assert throttle.slot_limit("sms", 16) == 16 and throttle.slot_limit("email", 16) == 4
    await nowhere.dispose()


async def test_one_tenant_waiting_for_tokens_leaves_slots_to_the_others(engine: AsyncEngine) -> None:
    """A rate-limited tenant's pages hold at most a quarter of a channel's slots in a worker: with
    16 slots, a fifth page of tenant A waits for one of A's four, and tenant B still gets one."""
    acct = account()
    throttle = Throttle(engine, {acct: AccountRateLimit(per_second=1)})
    held, inside = asyncio.Event(), Counter[str]()

    async def hold(tenant: str) -> None:
        async with throttle.slot(acct, tenant, 16):
            inside[tenant] += 1
            await held.wait()

    pages = [asyncio.create_task(hold("tenant_a")) for _ in range(5)]
    pages.append(asyncio.create_task(hold("tenant_b")))
    await asyncio.sleep(0.1)
    assert inside == {"tenant_a": 4, "tenant_b": 1}
    held.set()
    await asyncio.wait_for(asyncio.gather(*pages), 1)
    assert inside == {"tenant_a": 5, "tenant_b": 1}  # the fifth got its turn
    unlimited = Throttle(engine, {})
    async with asyncio.timeout(1):
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(20):  # no gate for an account without limits
                await stack.enter_async_context(unlimited.slot("email", "tenant_a", 16))
