"""Honest engagement on the real stack (README "Honest engagement"): opens and clicks recorded
through the real tracking endpoints with chosen user agents and client addresses, the delivery
times set in the ledger, then what the interactions, /stats and the A/B counts say.

One campaign of 30 recipients: 20 got their email an hour ago, 10 just now.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from api.deps import AppState
from api.main import create_app
from api.rollup import BackgroundRollup
from core.experiments import ABTest, Variant
from db.experiments import variant_counts
from db.rollups import NewInteraction, record
from tests.conftest import Stack, StackFactory
from tests.test_stats import Ledger, build_ledger

MAIL_CLIENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
PERSON = "203.0.113.7"
APPLE_RELAY = "17.58.101.12"
SCANNER_HOST = "198.51.100.9"


@asynccontextmanager
async def client_at(stack: Stack, host: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API as seen from `host` (the ASGI client address the app reads, as behind a trusted
    proxy with uvicorn's --proxy-headers)."""
    state = AppState(settings=stack.settings, engine=stack.engine, control=None)
    app = create_app(stack.settings, state)
    transport = httpx.ASGITransport(app=app, client=(host, 40_000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        await state.close_tracking()


async def _get(client: httpx.AsyncClient, url: str, agent: str, method: str = "GET") -> httpx.Response:
    return await client.request(method, url, headers={"User-Agent": agent})


async def _classes(stack: Stack, campaign_id: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """{(customer, type): [(class, reason), ...]} as /interactions shows them."""
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    r = await stack.call("GET", f"/campaigns/{campaign_id}/interactions", params={"take": 1000})
    assert r.status_code == 200, r.text
    for row in r.json()["data"]:
        if row["type"] in ("OPENED", "CLICKED"):
            out.setdefault((row["customerId"], row["type"]), []).append((row["class"], row["classReason"]))
    return out


async def _record(stack: Stack, ledger: Ledger) -> None:
    """The interactions of the scenario (module docstring), each through the real endpoints."""
    async with client_at(stack, PERSON) as person, client_at(stack, APPLE_RELAY) as apple:
        # 20: a mail client's agent, but within seconds of delivery: a prefetch.
        assert (await _get(person, ledger.links(20, "o")[0], MAIL_CLIENT)).status_code == 200
        # 0: Gmail's image proxy; 1: Apple's relay with a bare agent: machine opens.
        assert (await _get(person, ledger.links(0, "o")[0], GMAIL_PROXY)).status_code == 200
        assert (await _get(apple, ledger.links(1, "o")[0], "Mozilla/5.0")).status_code == 200
        # 2..11: people, an hour after delivery, in their mail client.
        for i in range(2, 12):
            assert (await _get(person, ledger.links(i, "o")[0], MAIL_CLIENT)).status_code == 200
        # 2: a person clicks one link.
        assert (await _get(person, ledger.links(2, "c")[0], BROWSER)).status_code == 302
        # 13: a HEAD on a link (a scanner checking it) is a machine's, and still redirects.
        r = await _get(person, ledger.links(13, "c")[0], BROWSER, method="HEAD")
        assert r.status_code == 302 and r.headers["location"] == "https://example.com/offer"
    async with client_at(stack, SCANNER_HOST) as scanner:
        # 12: every link of the message followed within a second, an hour after delivery, with a
        # browser's agent: only the burst gives the scanner away.
        for url in ledger.links(12, "c"):
            assert (await _get(scanner, url, BROWSER)).status_code == 302


async def _delivered(stack: Stack, ledger: Ledger, at_of: list[datetime]) -> None:
    """DELIVERED for every message, as the provider's delivery reports would record it."""
    async with stack.engine.begin() as conn:
        for i, customer in enumerate(ledger.customers):
            at = at_of[i] + timedelta(milliseconds=100)
            delivered = NewInteraction(
                ledger.tenant,
                ledger.campaign_id,
                customer,
                "EMAIL",
                "DELIVERED",
                at,
                ledger.email_delivery[i],
            )
            await record(conn, delivered)


async def _check_classes(stack: Stack, ledger: Ledger) -> None:
    c = ledger.customers
    classes = await _classes(stack, ledger.campaign_id)
    assert classes[(c[0], "OPENED")] == [("machine", "user-agent:google-image-proxy")]
    assert classes[(c[1], "OPENED")] == [("machine", "network:apple-mail-privacy-protection")]
    assert classes[(c[20], "OPENED")] == [("machine", "soon-after-sent")]
    assert all(classes[(c[i], "OPENED")] == [("human", "no-machine-signal")] for i in range(2, 12))
    assert classes[(c[2], "CLICKED")] == [("human", "no-machine-signal")]
    assert classes[(c[13], "CLICKED")] == [("machine", "head-request")]
    assert classes[(c[12], "CLICKED")] == [("machine", "link-burst")] * 2


def _check_stats(stats: dict[str, Any]) -> None:
    assert (stats["openedCount"], stats["clickedCount"]) == (13, 3)
    assert (stats["humanOpenedCount"], stats["machineOpenedCount"]) == (10, 3)
    assert (stats["humanClickedCount"], stats["machineClickedCount"]) == (1, 2)
    assert stats["humanOpenedCount"] + stats["machineOpenedCount"] == stats["openedCount"]
    assert stats["humanClickedCount"] + stats["machineClickedCount"] == stats["clickedCount"]
    # The seed's rates keep their meaning (all counts) unless the tenant chooses human counts.
    assert (stats["rateBasis"], stats["openRate"]) == ("ALL", round(13 / 30, 4))
    assert (stats["humanOpenRate"], stats["humanClickRate"]) == (round(10 / 30, 4), round(1 / 10, 4))
    assert sum(b["humanOpened"] for b in stats["timeline"]) == 10
    assert sum(b["opened"] for b in stats["timeline"]) == 13


async def _check_human_rates_setting(stack: Stack, ledger: Ledger) -> None:
    policy = (await stack.call("GET", f"/tenants/{stack.tenant}/policy")).json()
    policy["engagement"] = {"rates": "HUMAN"}
    r = await stack.call("PUT", f"/tenants/{stack.tenant}/policy", json=policy)
    assert r.status_code == 200, r.text
    stats = await ledger.stats()
    assert (stats["rateBasis"], stats["openRate"]) == ("HUMAN", round(10 / 30, 4))
    assert (stats["clickRate"], stats["openedCount"]) == (round(1 / 10, 4), 13)


async def _check_ab_counts(stack: Stack, ledger: Ledger) -> None:
    """A/B counts (the winner's figures) are human counts: variant A = customers 0..14."""
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE deliveries SET variant = CASE WHEN customer_id = ANY(:a) THEN 'A' ELSE 'B' END "
                "WHERE campaign_id = :c"
            ),
            {"a": ledger.customers[:15], "c": ledger.campaign_id},
        )
        test = ABTest(variants=[Variant(key="A"), Variant(key="B")])
        a, b = await variant_counts(conn, ledger.campaign_id, test)
    assert (a.opened, a.clicked) == (10, 1)  # 2..11 opened, 2 clicked; 0, 1, 12, 13 were machines
    assert (b.opened, b.clicked) == (0, 0)  # 20's open was a prefetch


async def test_machine_and_human_engagement_are_told_apart_and_add_up(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    hour_ago, now = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) - timedelta(seconds=1)
    sent_at = [hour_ago if i < 20 else now for i in range(30)]
    ledger = await build_ledger(stack, targets=30, email_sent=30, sms_sent=0, sent_at=lambda i: sent_at[i])
    await _delivered(stack, ledger, sent_at)
    await _record(stack, ledger)
    await _check_classes(stack, ledger)
    _check_stats(await ledger.stats())  # the same before and after the roll-up counts the rows
    await _check_human_rates_setting(stack, ledger)
    await _check_ab_counts(stack, ledger)


async def test_the_background_roll_up_waits_so_a_burst_is_classified_whole(
    make_stack: StackFactory,
) -> None:
    # The background roll-up leaves young clicks for the burst rule; an explicit pass counts all.
    stack = await make_stack(worker=False)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    ledger = await build_ledger(stack, targets=1, email_sent=1, sms_sent=0, sent_at=lambda i: hour_ago)
    first, second = ledger.links(0, "c")
    async with client_at(stack, PERSON) as person:
        assert (await _get(person, first, BROWSER)).status_code == 302
        background = BackgroundRollup(stack.engine)
        await background.run_once(settle=True)
        assert (await _pending(stack, ledger.campaign_id)) == 1  # the click waits
        assert (await _get(person, second, BROWSER)).status_code == 302
    classes = await _classes(stack, ledger.campaign_id)
    assert classes[(ledger.customers[0], "CLICKED")] == [("machine", "link-burst")] * 2
    stats = await ledger.stats()
    assert (stats["clickedCount"], stats["humanClickedCount"], stats["machineClickedCount"]) == (1, 0, 1)


async def _pending(stack: Stack, campaign_id: str) -> int:
    async with stack.engine.connect() as conn:
        q = text("SELECT count(*) FROM interactions WHERE campaign_id = :c AND NOT rolled_up")
        return int((await conn.execute(q, {"c": campaign_id})).scalar_one())
