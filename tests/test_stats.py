"""Issue 4 acceptance: the seed's stats example, built through the real tracking links and webhooks.

The ledger (customers, a COMPLETED campaign, its run, deliveries and SENT interactions) is written
straight into the database, as the send path would leave it; every later interaction arrives
through the public endpoints: opens and clicks through the URLs that `build_email` wrote into each
message, deliveries/bounces/failures through the signed webhooks, conversions through POST /events
and unsubscribes through the one-click POST.
"""

import json
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import event, insert, text

from api.rollup import BackgroundRollup
from api.routes.webhooks import SIGNATURE_HEADER, signature
from core.constants import run_id_for
from core.ids import new_id
from db.models import Campaign, Customer, Delivery, SendRun
from db.rollups import NewInteraction, insert_interaction, roll_up
from providers.email_content import EmailEnvelope, EmailParts, build_email
from tests.conftest import Stack, StackFactory

OFFER = "https://example.com/offer"
HTML = (
    '<html><body><p>Hi {name}, <a href="https://example.com/offer">see the offer</a> or'
    " <a href='https://example.com/club?x=1&amp;y=2'>the club</a>.</p></body></html>"
)
# The human/machine fields of /stats (README "Honest engagement").
HONEST_KEYS = (
    "humanOpenedCount",
    "machineOpenedCount",
    "humanClickedCount",
    "machineClickedCount",
    "humanOpenRate",
    "humanClickRate",
    "humanConversionRate",
    "rateBasis",
)
_TRACKING_URL = re.compile(r"http://testserver/t/[ocu]/[A-Za-z0-9_.-]+")


@dataclass
class Ledger:
    """A campaign as the send path leaves it, with the messages it sent (index = customer number)."""

    stack: Stack
    tenant: str
    campaign_id: str
    customers: list[str]
    email_delivery: dict[int, str] = field(default_factory=dict)
    sms_delivery: dict[int, str] = field(default_factory=dict)
    emails: dict[int, EmailMessage] = field(default_factory=dict)
    sms_sid: dict[int, str] = field(default_factory=dict)

    def links(self, i: int, kind: str) -> list[str]:
        """Tracking URLs of kind o/c/u in customer i's HTML part, in order."""
        part = self.emails[i].get_body(preferencelist=("html",))
        assert part is not None
        body = str(part.get_content())
        return [u for u in _TRACKING_URL.findall(body) if f"/t/{kind}/" in u]

    async def open(self, i: int) -> None:
        r = await self.stack.api.get(self.links(i, "o")[0])
        assert r.status_code == 200 and r.headers["content-type"] == "image/gif"

    async def click(self, i: int, n: int = 0) -> str:
        r = await self.stack.api.get(self.links(i, "c")[n])
        assert r.status_code == 302, r.text
        return str(r.headers["location"])

    async def unsubscribe(self, i: int) -> None:
        url = self.emails[i]["List-Unsubscribe"].strip("<>")
        r = await self.stack.api.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200, r.text

    async def webhook(self, channel: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        r = await signed_post(self.stack, f"/webhooks/{channel}", {"events": events})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def stats(self) -> dict[str, Any]:
        """/stats, which must say the same before and after the background roll-up counts what
        tracking appended (only its freshness fields differ)."""
        before = await self._stats()
        await BackgroundRollup(self.stack.engine).run_once()
        after = await self._stats()
        assert after["rollupPending"] == 0
        assert _figures(before) == _figures(after), (before, after)
        return after

    async def _stats(self) -> dict[str, Any]:
        r = await self.stack.call("GET", f"/campaigns/{self.campaign_id}/stats", tenant=self.tenant)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


def _figures(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if k not in ("asOf", "rollupPending")}


async def signed_post(stack: Stack, path: str, payload: dict[str, Any], secret: str | None = None) -> Any:
    """POST `payload` as a provider would: JSON signed with the webhook secret."""
    body = json.dumps(payload).encode()
    sig = signature(secret or stack.settings.webhook_secret, body)
    return await stack.api.post(
        path, content=body, headers={"Content-Type": "application/json", SIGNATURE_HEADER: sig}
    )


async def build_ledger(
    stack: Stack,
    *,
    targets: int,
    email_sent: int,
    sms_sent: int,
    sent_at: Callable[[int], datetime],
    conversion_event: str | None = None,
    conversion_window_hours: int | None = None,
    customers_of: Ledger | None = None,
) -> Ledger:
    """Customers 0..targets-1 (new ones, or those of `customers_of`); the first `email_sent` got the
    email and the first `sms_sent` the SMS."""
    tenant = stack.tenant if customers_of is None else customers_of.tenant
    campaign_id = new_id("campaign")
    run_id = run_id_for(campaign_id, 1)
    ids = [new_id("customer") for _ in range(targets)] if customers_of is None else customers_of.customers
    ledger = Ledger(stack, tenant, campaign_id, ids[:targets])
    customers = [
        {
            "id": cid,
            "tenant_id": tenant,
            "external_id": f"ext-{campaign_id}-{i}",
            "email": f"member{i}@{tenant.replace('_', '-')}.example.com",
            "phone": f"+2783{i:07d}",
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
        }
        for i, cid in enumerate(ledger.customers)
    ]
    deliveries: list[dict[str, Any]] = []
    sent: list[NewInteraction] = []
    for i, cid in enumerate(ledger.customers):
        for channel, limit in (("EMAIL", email_sent), ("SMS", sms_sent)):
            delivery_id = new_id("delivery")
            row: dict[str, Any] = {
                "id": delivery_id,
                "run_id": run_id,
                "campaign_id": campaign_id,
                "tenant_id": tenant,
                "customer_id": cid,
                "channel": channel,
                "outcome": "SKIPPED",
                "reason": "NO_CONSENT",
                "sent_at": None,
                "claimed_at": None,
                "provider_message_id": None,
            }
            if i < limit:
                at = sent_at(i) + (timedelta(minutes=1) if channel == "SMS" else timedelta())
                row.update(outcome="SENT", reason=None, sent_at=at, claimed_at=at)
                if channel == "EMAIL":
                    msg = build_email(
                        EmailEnvelope(
                            delivery_id,
                            campaign_id,
                            tenant,
                            cid,
                            "Club <club@example.com>",
                            customers[i]["email"],
                        ),
                        EmailParts("Offer", HTML.format(name=f"First{i}"), f"Hi First{i}: {OFFER}"),
                        stack.settings,
                    )
                    ledger.emails[i], ledger.email_delivery[i] = msg, delivery_id
                    row["provider_message_id"] = msg["Message-ID"]
                else:
                    ledger.sms_delivery[i] = delivery_id
                    ledger.sms_sid[i] = row["provider_message_id"] = "SM" + secrets.token_hex(16)
                sent.append(NewInteraction(tenant, campaign_id, cid, channel, "SENT", at, delivery_id))
            deliveries.append(row)
    skipped = sum(1 for d in deliveries if d["outcome"] == "SKIPPED")
    async with stack.engine.begin() as conn:
        if customers_of is None:
            await conn.execute(insert(Customer), customers)
        await conn.execute(
            insert(Campaign).values(
                id=campaign_id,
                tenant_id=tenant,
                name="Summer Tournament Promo",
                type="ONE_TIME",
                status="COMPLETED",
                channels=["EMAIL", "SMS"],
                target_count=targets,
                skipped_count=skipped,
                conversion_event=conversion_event,
                conversion_window_hours=conversion_window_hours,
            )
        )
        await conn.execute(
            insert(SendRun).values(
                id=run_id,
                campaign_id=campaign_id,
                tenant_id=tenant,
                number=1,
                snapshot_complete=True,
                target_count=targets,
            )
        )
        await conn.execute(insert(Delivery), deliveries)
        ids = [i for i in [await insert_interaction(conn, item) for item in sent] if i is not None]
        await roll_up(conn, ids=ids)
    return ledger


@dataclass
class Seed:
    ledger: Ledger
    hour0: datetime


_SEED: list[Seed] = []


async def seed_example(make_stack: StackFactory) -> Seed:
    """The seed's example, built once per session and shared by the tests of this module."""
    # The seed fetches links in quick succession to stand for opens and clicks spread over days:
    # without the replay window, which would count each client's repeats once.
    stack = await make_stack(worker=False, tracking_dedupe_seconds=0)
    if _SEED:
        _SEED[0].ledger.stack = stack  # the database is shared; the API client is per test
        return _SEED[0]
    hour0 = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)

    def sent_at(i: int) -> datetime:  # 100 sends in the first hour, 385 in the next
        return hour0 + timedelta(minutes=10) if i < 100 else hour0 + timedelta(hours=1, minutes=5)

    ledger = await build_ledger(
        stack,
        targets=500,
        email_sent=485,
        sms_sent=380,
        sent_at=sent_at,
        conversion_event="booking.created",
        conversion_window_hours=48,
    )
    # Deliveries and hard bounces through the email webhook (Message-ID with and without <>).
    email_events = [
        {
            "id": f"evt_d{i}",
            "type": "DELIVERED",
            "providerMessageId": ledger.emails[i]["Message-ID"].strip("<>" if i % 2 else ""),
        }
        for i in range(478)
    ]
    email_events += [
        {
            "id": f"evt_b{i}",
            "type": "BOUNCED",
            "bounceType": "HARD",
            "reason": "550 no such user",
            "deliveryId": ledger.email_delivery[i],
        }
        for i in range(478, 485)
    ]
    email_events.append(
        {"id": "evt_soft", "type": "BOUNCED", "bounceType": "SOFT", "deliveryId": ledger.email_delivery[0]}
    )
    result = await ledger.webhook("email", email_events)
    assert result == {"received": 486, "recorded": 485, "duplicates": 0, "ignored": 1}
    sms_events = [
        {"id": f"sms_d{i}", "type": "DELIVERED", "providerMessageId": ledger.sms_sid[i]} for i in range(375)
    ]
    sms_events += [
        {"id": f"sms_f{i}", "type": "FAILED", "errorCode": "30003", "deliveryId": ledger.sms_delivery[i]}
        for i in range(375, 380)
    ]
    assert (await ledger.webhook("sms", sms_events))["recorded"] == 380
    for i in range(215):
        await ledger.open(i)
    for i in range(10):
        await ledger.open(i)  # opened twice: one opener, two OPENED interactions
    for i in range(89):
        assert await ledger.click(i) == OFFER
    for i in range(12):
        r = await stack.call(
            "POST",
            "/events",
            tenant=ledger.tenant,
            json={
                "id": f"evt_booking_{i}",
                "type": "booking.created",
                "tenantId": ledger.tenant,
                "customerId": ledger.customers[i],
                "occurredAt": datetime.now(UTC).isoformat(),
                "data": {"value": 120},
            },
        )
        assert r.status_code == 202 and r.json()["conversionsRecorded"] == 1, r.text
    for i in range(3):
        await ledger.unsubscribe(i)
    _SEED.append(Seed(ledger, hour0))
    return _SEED[0]


@contextmanager
def statements(stack: Stack) -> Iterator[list[str]]:
    """Every SQL statement the shared engine runs inside the block."""
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(stack.engine.sync_engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(stack.engine.sync_engine, "before_cursor_execute", listen)


async def test_seed_example_stats_through_the_real_endpoints(make_stack: StackFactory) -> None:
    seed = await seed_example(make_stack)
    ledger = seed.ledger
    with statements(ledger.stack) as seen:
        r = await ledger.stack.call("GET", f"/campaigns/{ledger.campaign_id}/stats", tenant=ledger.tenant)
    # Stats read the roll-ups and only the interactions no roll-up has counted yet (a partial index
    # holds just those): no statement reads the interactions table otherwise.
    touching = [s for s in seen if re.search(r"\binteractions\b", s)]
    assert len(touching) == 1 and re.search(r"WHERE i\.campaign_id = \S+ AND NOT i\.rolled_up", touching[0])
    # The seed's opens and clicks came through the tracking links: appended, not rolled up yet
    # (no background roll-up runs here), and counted all the same (ledger.stats checks).
    assert r.json()["rollupPending"] > 0 and r.json()["asOf"]
    stats = _figures(await ledger.stats())

    timeline = stats.pop("timeline")
    # Honest engagement (tests/test_engagement_stack.py): the seed's opens and clicks come from a
    # script (python-httpx's agent), so all are a machine's; human + machine = all.
    honest = {k: stats.pop(k) for k in HONEST_KEYS}
    assert honest["humanOpenedCount"] + honest["machineOpenedCount"] == 215 and honest["rateBasis"] == "ALL"
    assert honest["humanClickedCount"] + honest["machineClickedCount"] == 89
    assert stats == {
        "campaignId": ledger.campaign_id,
        "targetCount": 500,
        "sentCount": 485,
        "deliveredCount": 478,
        "openedCount": 215,
        "clickedCount": 89,
        "convertedCount": 12,
        "unsubscribedCount": 3,
        "bouncedCount": 7,
        "deliveryRate": 0.9856,
        "openRate": 0.4498,
        "clickRate": 0.4140,
        "conversionRate": 0.1348,
        "byChannel": {
            "EMAIL": {"sent": 485, "delivered": 478, "opened": 215, "clicked": 89, "bounced": 7},
            "SMS": {"sent": 380, "delivered": 375, "failed": 5},
        },
        "skippedCount": 15 + 120,
        "failedCount": 5,
        "unknownCount": 0,
        # Only RECURRING campaigns list runs; only TRIGGERED ones show their event queue.
        "runs": None,
        "triggers": None,
        # Only a campaign with a holdout group or an A/B test shows them.
        "holdout": None,
        "byVariant": None,
        "abDecision": None,
    }
    # Hourly UTC buckets; each recipient counted in the hour of its first such interaction.
    assert timeline[:2] == [
        {"hour": seed.hour0.isoformat().replace("+00:00", "Z"), "sent": 100, "opened": 0, "humanOpened": 0},
        {
            "hour": (seed.hour0 + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
            "sent": 385,
            "opened": 0,
            "humanOpened": 0,
        },
    ]
    assert sum(b["sent"] for b in timeline) == 485 and sum(b["opened"] for b in timeline) == 215
    assert [b["hour"] for b in timeline] == sorted(b["hour"] for b in timeline)
    assert all(b["hour"].endswith(":00:00Z") for b in timeline)

    # GET /campaigns/:id says the same.
    r = await ledger.stack.call("GET", f"/campaigns/{ledger.campaign_id}", tenant=ledger.tenant)
    campaign = r.json()
    for key in (
        "targetCount",
        "sentCount",
        "deliveredCount",
        "openedCount",
        "clickedCount",
        "convertedCount",
        "unsubscribedCount",
        "bouncedCount",
        "failedCount",
        "skippedCount",
        "unknownCount",
        "openRate",
    ):
        assert campaign[key] == stats[key], key

    # Side effects: hard bounces and unsubscribes suppress; the soft bounce does not.
    async with ledger.stack.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, email_bounced_at IS NOT NULL, email_unsubscribed_at IS NOT NULL,"
                    " sms_unsubscribed_at IS NOT NULL FROM customers WHERE id = ANY(:ids)"
                ),
                {"ids": ledger.customers},
            )
        ).all()
    index = {cid: i for i, cid in enumerate(ledger.customers)}
    assert {index[r[0]] for r in rows if r[1]} == set(range(478, 485))
    assert {index[r[0]] for r in rows if r[2]} == {0, 1, 2}
    assert not any(r[3] for r in rows)


async def test_interactions_filters_and_exact_paging(make_stack: StackFactory) -> None:
    ledger = (await seed_example(make_stack)).ledger
    path = f"/campaigns/{ledger.campaign_id}/interactions"

    async def page(**params: Any) -> dict[str, Any]:
        r = await ledger.stack.call("GET", path, tenant=ledger.tenant, params=params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    expected_total = 865 + 478 + 375 + 7 + 5 + 225 + 89 + 12 + 3
    first = await page()
    assert first["meta"] == {"total": expected_total, "skip": 0, "take": 25} and len(first["data"]) == 25

    # take=1000 pages cover every interaction exactly once, newest first.
    seen: list[dict[str, Any]] = []
    for skip in range(0, expected_total, 1000):
        body = await page(skip=skip, take=1000)
        assert body["meta"]["total"] == expected_total
        assert len(body["data"]) == min(1000, expected_total - skip)
        seen += body["data"]
    assert len({i["id"] for i in seen}) == expected_total
    times = [i["occurredAt"] for i in seen]
    assert times == sorted(times, reverse=True)
    for skip in (expected_total, expected_total + 1, 10_000_000):
        body = await page(skip=skip, take=1000)
        assert body["data"] == [] and body["meta"]["total"] == expected_total
    last = await page(skip=expected_total - 1, take=1000)
    assert len(last["data"]) == 1 and last["data"][0]["id"] == seen[-1]["id"]
    for bad in ({"take": 1001}, {"take": 0}, {"skip": -1}, {"type": "PURCHASED"}, {"channel": "FAX"}):
        r = await ledger.stack.call("GET", path, tenant=ledger.tenant, params=bad)
        assert r.status_code == 422, bad

    by_type = Counter(i["type"] for i in seen)
    for type_, n in by_type.items():
        assert (await page(type=type_, take=1))["meta"]["total"] == n
    assert by_type["OPENED"] == 225 and by_type["CLICKED"] == 89 and by_type["FAILED"] == 5
    sms = await page(channel="SMS", take=1000)
    # Conversions are last-touch: the SMS went out a minute after the email, so they are SMS's.
    assert sms["meta"]["total"] == 380 + 375 + 5 + 12 and {i["channel"] for i in sms["data"]} == {"SMS"}
    assert (await page(channel="SMS", type="CONVERTED"))["meta"]["total"] == 12
    email_sent = await page(channel="EMAIL", type="SENT", take=1)
    assert email_sent["meta"]["total"] == 485

    clicks = await page(type="CLICKED", take=1000)
    assert clicks["meta"]["total"] == 89
    click = clicks["data"][0]
    assert set(click) == {
        "id",
        "customerId",
        "customerEmail",
        "customerName",
        "type",
        "channel",
        "occurredAt",
        "metadata",
        "class",
        "classReason",
    }
    assert click["metadata"] == {"linkId": "link_1", "linkUrl": OFFER} and click["channel"] == "EMAIL"
    i = ledger.customers.index(click["customerId"])
    assert click["customerName"] == f"First{i} Last{i}"
    assert click["customerEmail"] == f"member{i}@{ledger.tenant.replace('_', '-')}.example.com"
    assert click["id"].startswith("interaction_") and click["occurredAt"].endswith("Z")

    mine = await page(customerId=ledger.customers[0], take=1000)
    # customer 0: SENT x2, DELIVERED, OPENED x2, CLICKED, CONVERTED, UNSUBSCRIBED (the soft bounce: nothing)
    assert Counter(i["type"] for i in mine["data"]) == {
        "SENT": 2,
        "DELIVERED": 2,
        "OPENED": 2,
        "CLICKED": 1,
        "CONVERTED": 1,
        "UNSUBSCRIBED": 1,
    }
    assert mine["meta"]["total"] == 9
    assert (await page(customerId=ledger.customers[0], type="OPENED"))["meta"]["total"] == 2


async def test_stats_and_interactions_are_tenant_scoped(make_stack: StackFactory) -> None:
    ledger = (await seed_example(make_stack)).ledger
    stack = await make_stack(worker=False)
    for suffix in ("stats", "interactions"):
        r = await stack.call("GET", f"/campaigns/{ledger.campaign_id}/{suffix}")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        r = await stack.api.get(f"/campaigns/{ledger.campaign_id}/{suffix}")
        assert r.status_code == 401


async def test_interactions_total_is_exact_before_roll_up(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    now = datetime.now(UTC)
    ledger = await build_ledger(stack, targets=3, email_sent=3, sms_sent=1, sent_at=lambda i: now)
    path = f"/campaigns/{ledger.campaign_id}/interactions"
    # A SENT that the send path has written but not rolled up yet (mid-page) still counts.
    async with stack.engine.begin() as conn:
        await insert_interaction(
            conn, NewInteraction(ledger.tenant, ledger.campaign_id, ledger.customers[0], "SMS", "FAILED", now)
        )
    for params, total in (
        ({}, 5),
        ({"type": "FAILED"}, 1),
        ({"channel": "SMS"}, 2),
        ({"channel": "EMAIL", "type": "SENT"}, 3),
        ({"type": "OPENED"}, 0),
    ):
        r = await stack.call("GET", path, params=params)
        assert r.json()["meta"]["total"] == total == len(r.json()["data"]), params
    stats = await ledger.stats()
    # Stats count it too, before any roll-up (ledger.stats checks they say the same after one).
    assert stats["sentCount"] == 3 and stats["failedCount"] == 1
    assert stats["deliveryRate"] == 0.0 and stats["openRate"] is None and stats["clickRate"] is None
    assert stats["timeline"] == [
        {
            "hour": now.replace(minute=0, second=0, microsecond=0).isoformat().replace("+00:00", "Z"),
            "sent": 3,
            "opened": 0,
            "humanOpened": 0,
        }
    ]
