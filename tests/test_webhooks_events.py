"""Provider webhooks (signed, idempotent on the event id) and conversions through POST /events."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from api.routes.webhooks import SIGNATURE_HEADER, signature
from tests.conftest import Stack, StackFactory
from tests.test_stats import Ledger, build_ledger, signed_post


async def _counts(stack: Stack, campaign_id: str) -> dict[tuple[str, str], tuple[int, int]]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT channel, type, recipients, events FROM campaign_counters WHERE campaign_id = :c"),
            {"c": campaign_id},
        )
        return {(r[0], r[1]): (int(r[2]), int(r[3])) for r in rows}


async def _bounced(stack: Stack, ledger: Ledger) -> set[int]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id FROM customers WHERE id = ANY(:ids) AND email_bounced_at IS NOT NULL"),
            {"ids": ledger.customers},
        )
        return {ledger.customers.index(r[0]) for r in rows}


async def _ledger(stack: Stack, **kw: Any) -> Ledger:
    now = datetime.now(UTC) - timedelta(hours=1)
    args: dict[str, Any] = {"targets": 4, "email_sent": 4, "sms_sent": 3, "sent_at": lambda i: now}
    args.update(kw)
    return await build_ledger(stack, **args)


async def test_unauthenticated_webhooks_record_nothing(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    ledger = await _ledger(stack)
    before = await _counts(stack, ledger.campaign_id)
    email = {"events": [{"id": "evt_x1", "type": "BOUNCED", "deliveryId": ledger.email_delivery[0]}]}
    sms = {"events": [{"id": "evt_x2", "type": "DELIVERED", "deliveryId": ledger.sms_delivery[0]}]}
    for path, payload in (("/webhooks/email", email), ("/webhooks/sms", sms)):
        body = json.dumps(payload).encode()
        other_body = json.dumps({"events": []}).encode()
        attempts = [
            {},
            {SIGNATURE_HEADER: ""},
            {SIGNATURE_HEADER: signature("wrong-secret-0123456789", body)},
            {SIGNATURE_HEADER: signature(stack.settings.webhook_secret, other_body)},  # for another body
            {SIGNATURE_HEADER: signature(stack.settings.webhook_secret, body).replace("sha256=", "")},
            {SIGNATURE_HEADER: "sha256=" + "ff" * 40},
            {"Authorization": f"Bearer {stack.settings.webhook_secret}"},
        ]
        for headers in attempts:
            r = await stack.api.post(
                path, content=body, headers={"Content-Type": "application/json", **headers}
            )
            assert r.status_code == 401, (path, headers)
            assert r.headers["content-type"] == "application/problem+json"
        r = await stack.api.post(path, content=body, headers=[(SIGNATURE_HEADER.encode(), b"sha256=\xe9")])
        assert r.status_code == 401  # not even ASCII
        # Signed with the right secret, then altered in transit.
        sig = signature(stack.settings.webhook_secret, body)
        tampered = body.replace(b"evt_x", b"evt_y")
        r = await stack.api.post(path, content=tampered, headers={SIGNATURE_HEADER: sig})
        assert r.status_code == 401
    assert await _counts(stack, ledger.campaign_id) == before
    assert await _bounced(stack, ledger) == set()


async def test_email_webhook_records_deliveries_and_bounces_once(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    ledger = await _ledger(stack)
    mid = {i: m["Message-ID"] for i, m in ledger.emails.items()}
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    events = [
        {
            "id": f"{ledger.campaign_id}-e1",
            "type": "DELIVERED",
            "providerMessageId": mid[0],
        },  # <...> as in the header
        {
            "id": f"{ledger.campaign_id}-e2",
            "type": "DELIVERED",
            "providerMessageId": mid[1].strip("<>"),
        },  # bare
        {
            "id": f"{ledger.campaign_id}-e3",
            "type": "DELIVERED",
            "deliveryId": ledger.email_delivery[2],
            "occurredAt": at.isoformat(),
        },
        {
            "id": f"{ledger.campaign_id}-e1",
            "type": "DELIVERED",
            "providerMessageId": mid[0],
        },  # the same event twice in a batch
        {
            "id": f"{ledger.campaign_id}-e4",
            "type": "BOUNCED",
            "bounceType": "HARD",
            "reason": "5.1.1 unknown user",
            "providerMessageId": mid[3],
        },
        {
            "id": f"{ledger.campaign_id}-e5",
            "type": "BOUNCED",
            "bounceType": "SOFT",
            "providerMessageId": mid[2],
        },
        {"id": f"{ledger.campaign_id}-e6", "type": "DELIVERED", "providerMessageId": "<nobody@nowhere>"},
        {
            "id": f"{ledger.campaign_id}-e7",
            "type": "DELIVERED",
            "deliveryId": ledger.sms_delivery[0],
        },  # an SMS: not this hook's
    ]
    r = await signed_post(stack, "/webhooks/email", {"events": events})
    assert r.status_code == 200, r.text
    assert r.json() == {"received": 8, "recorded": 4, "duplicates": 1, "ignored": 3}
    # The provider retries the whole batch: nothing changes.
    r = await signed_post(stack, "/webhooks/email", {"events": events})
    assert r.json() == {"received": 8, "recorded": 0, "duplicates": 5, "ignored": 3}

    counts = await _counts(stack, ledger.campaign_id)
    assert counts[("EMAIL", "DELIVERED")] == (3, 3) and counts[("EMAIL", "BOUNCED")] == (1, 1)
    assert ("SMS", "DELIVERED") not in counts
    assert await _bounced(stack, ledger) == {3}  # hard bounce only; the soft one suppresses nothing
    page = (
        await stack.call("GET", f"/campaigns/{ledger.campaign_id}/interactions", params={"type": "BOUNCED"})
    ).json()
    assert page["data"][0]["metadata"] == {
        "providerEventId": f"{ledger.campaign_id}-e4",
        "bounceType": "HARD",
        "reason": "5.1.1 unknown user",
    }
    delivered = (
        await stack.call(
            "GET",
            f"/campaigns/{ledger.campaign_id}/interactions",
            params={"type": "DELIVERED", "customerId": ledger.customers[2]},
        )
    ).json()
    assert delivered["data"][0]["occurredAt"] == "2030-01-02T03:04:05Z"
    stats = await ledger.stats()
    assert (stats["sentCount"], stats["deliveredCount"], stats["bouncedCount"]) == (4, 3, 1)
    assert stats["deliveryRate"] == 0.75


async def test_sms_webhook_records_delivered_and_failed(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    ledger = await _ledger(stack)
    events = [
        {"id": f"{ledger.campaign_id}-s1", "type": "DELIVERED", "providerMessageId": ledger.sms_sid[0]},
        {"id": f"{ledger.campaign_id}-s2", "type": "DELIVERED", "deliveryId": ledger.sms_delivery[1]},
        {
            "id": f"{ledger.campaign_id}-s3",
            "type": "FAILED",
            "errorCode": "30006",
            "reason": "landline",
            "providerMessageId": ledger.sms_sid[2],
        },
        {
            "id": f"{ledger.campaign_id}-s4",
            "type": "DELIVERED",
            "deliveryId": ledger.email_delivery[0],
        },  # an email: ignored
    ]
    r = await signed_post(stack, "/webhooks/sms", {"events": events})
    assert r.json() == {"received": 4, "recorded": 3, "duplicates": 0, "ignored": 1}
    stats = await ledger.stats()
    assert stats["byChannel"]["SMS"] == {"sent": 3, "delivered": 2, "failed": 1}
    assert stats["byChannel"]["EMAIL"]["delivered"] == 0
    assert stats["failedCount"] == 1 and stats["deliveredCount"] == 2
    failed = (
        await stack.call("GET", f"/campaigns/{ledger.campaign_id}/interactions", params={"type": "FAILED"})
    ).json()["data"]
    assert failed[0]["channel"] == "SMS" and failed[0]["metadata"]["errorCode"] == "30006"
    # FAILED is a delivery receipt: the customer can still be sent to later.
    async with stack.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT sms_unsubscribed_at FROM customers WHERE id = :id"), {"id": ledger.customers[2]}
            )
        ).one()
    assert row[0] is None


async def test_webhook_bodies_are_validated(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    bad: list[dict[str, Any]] = [
        {"events": []},
        {"events": [{"id": "x", "type": "DELIVERED"}]},  # names no message
        {"events": [{"id": "x", "type": "OPENED", "deliveryId": "delivery_1"}]},
        {"events": [{"id": "x", "type": "DELIVERED", "deliveryId": "delivery_1", "colour": "red"}]},
        {"events": [{"id": "x", "type": "BOUNCED", "bounceType": "MAYBE", "deliveryId": "d"}]},
    ]
    for payload in bad:
        r = await signed_post(stack, "/webhooks/email", payload)
        assert r.status_code == 422 and r.json()["errors"], payload
    body = b"{not json"
    r = await stack.api.post(
        "/webhooks/sms",
        content=body,
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(stack.settings.webhook_secret, body),
        },
    )
    assert r.status_code == 400


async def _event(
    stack: Stack,
    ledger: Ledger,
    i: int,
    type_: str,
    at: datetime,
    eid: str | None = None,
    tenant: str | None = None,
) -> Any:
    return await stack.call(
        "POST",
        "/events",
        tenant=tenant or ledger.tenant,
        json={
            "id": eid or f"evt_{type_}_{i}_{at.timestamp()}",
            "type": type_,
            "tenantId": ledger.tenant,
            "clubId": "club_1",
            "customerId": ledger.customers[i],
            "occurredAt": at.isoformat(),
            "data": {"amount": 10},
        },
    )


async def test_conversions_inside_the_window_once_per_recipient(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    sent = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=30)
    a = await _ledger(
        stack,
        sent_at=lambda i: sent,
        conversion_event="booking.created",
        conversion_window_hours=48,
        email_sent=3,
        sms_sent=0,
    )
    # The same customers in a second campaign converting on the same event (default window: 7 days),
    # and a campaign converting on another event.
    b = await build_ledger(
        stack,
        targets=4,
        email_sent=4,
        sms_sent=4,
        sent_at=lambda i: sent,
        conversion_event="booking.created",
        customers_of=a,
    )
    c = await _ledger(stack, sent_at=lambda i: sent, conversion_event="membership.renewed")

    async def converts(i: int, type_: str, at: datetime, eid: str | None = None) -> int:
        r = await _event(stack, a, i, type_, at, eid)
        assert r.status_code == 202, r.text
        n: int = r.json()["conversionsRecorded"]
        return n

    # One event converts in every matching campaign at once.
    assert await converts(0, "booking.created", sent + timedelta(hours=2)) == 2
    # A repeat of the event, and a later event of the same customer: still one conversion each.
    assert await converts(1, "booking.created", sent + timedelta(hours=3), "evt_repeat") == 2
    assert await converts(1, "booking.created", sent + timedelta(hours=3), "evt_repeat") == 0
    assert await converts(1, "booking.created", sent + timedelta(hours=5)) == 0
    # Before the send; another event type; after a's 48 h (inside b's 7 days); never emailed by a.
    assert await converts(2, "booking.created", sent - timedelta(minutes=1)) == 0
    assert await converts(2, "membership.renewed", sent + timedelta(hours=1)) == 0
    assert await converts(2, "booking.created", sent + timedelta(hours=48, seconds=1)) == 1
    assert await converts(3, "booking.created", sent + timedelta(hours=1)) == 1

    counts_a, counts_b = await _counts(stack, a.campaign_id), await _counts(stack, b.campaign_id)
    assert counts_a[("ALL", "CONVERTED")] == (2, 2) and counts_a[("EMAIL", "CONVERTED")] == (2, 2)
    assert counts_b[("ALL", "CONVERTED")] == (4, 4)
    assert counts_b[("SMS", "CONVERTED")] == (4, 4)  # last touch: the SMS went out after the email
    assert ("ALL", "CONVERTED") not in await _counts(stack, c.campaign_id)
    converted = (
        await stack.call("GET", f"/campaigns/{a.campaign_id}/interactions", params={"type": "CONVERTED"})
    ).json()["data"]
    assert {i["metadata"]["eventType"] for i in converted} == {"booking.created"}
    assert {i["occurredAt"] for i in converted} == {
        (sent + timedelta(hours=h)).isoformat().replace("+00:00", "Z") for h in (2, 3)
    }
    assert (await a.stats())["convertedCount"] == 2


async def test_conversions_consider_only_the_event_tenant(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    sent = datetime.now(UTC) - timedelta(hours=1)
    ledger = await _ledger(stack, sent_at=lambda i: sent, conversion_event="booking.created")
    body = {
        "id": "evt_t",
        "type": "booking.created",
        "tenantId": ledger.tenant,
        "customerId": ledger.customers[0],
        "occurredAt": datetime.now(UTC).isoformat(),
    }
    assert (await stack.api.post("/events", json=body)).status_code == 401
    r = await stack.call("POST", "/events", tenant=stack.other_tenant, json=body)
    assert r.status_code == 403
    # The same customer id sent under another (granted) tenant converts nothing here.
    r = await stack.call(
        "POST", "/events", tenant=stack.other_tenant, json={**body, "tenantId": stack.other_tenant}
    )
    assert r.status_code == 202 and r.json()["conversionsRecorded"] == 0
    r = await stack.call("POST", "/events", json={**body, "colour": "red"})
    assert r.status_code == 422
    r = await stack.call("POST", "/events", json={k: v for k, v in body.items() if k != "customerId"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "$.customerId"
    assert ("ALL", "CONVERTED") not in await _counts(stack, ledger.campaign_id)
    # Naive times are UTC.
    naive = (datetime.now(UTC) - timedelta(minutes=5)).replace(tzinfo=None).isoformat()
    r = await stack.call("POST", "/events", json={**body, "occurredAt": naive})
    assert r.status_code == 202 and r.json() == {
        "id": "evt_t",
        "duplicate": False,
        "triggered": 0,
        "skippedPaused": 0,
        "conversionsRecorded": 1,
    }
