"""Email provider webhooks in their own formats: SendGrid (ECDSA), Mailgun (HMAC), Postmark (Basic)
and Amazon SES through SNS (RSA certificate). For each: a signed documented payload is acted on
once however often it is replayed, a tampered one is a 401 that records nothing, bounces and
complaints put the address on the list with their reason, and a delivery settles an UNKNOWN send
(README "Provider webhooks")."""

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from tests.conftest import Stack, StackFactory
from tests.fixtures.provider_webhooks.kit import (
    CERT_URL,
    TOPIC,
    SendGridKey,
    SnsSigner,
    delivery,
    evidence,
    fixture,
    interactions,
    mailgun_body,
    make_unknown,
    postmark_headers,
    register,
    sns_app,
    suppressed,
)
from tests.test_stats import Ledger, build_ledger


async def _ledger(stack: Stack) -> Ledger:
    """Customers 0-3 were emailed; customer 4 was not (its row is made UNKNOWN by the tests)."""
    now = datetime.now(UTC) - timedelta(hours=1)
    return await build_ledger(stack, targets=5, email_sent=4, sms_sent=0, sent_at=lambda i: now)


def _email(ledger: Ledger, i: int) -> str:
    return (
        str(ledger.emails[i]["To"])
        if i in ledger.emails
        else f"member{i}@{ledger.tenant.replace('_', '-')}.example.com"
    )


async def _bounced(stack: Stack, ledger: Ledger) -> set[int]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id FROM customers WHERE id = ANY(:ids) AND email_bounced_at IS NOT NULL"),
            {"ids": ledger.customers},
        )
        return {ledger.customers.index(r[0]) for r in rows}


async def test_sendgrid(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    ledger = await _ledger(stack)
    key = SendGridKey()
    hook = await register(stack, "sendgrid", publicKey=key.public_b64)
    p = secrets.token_hex(4)
    mids = {f"MID{i}": ledger.emails[i]["Message-ID"] for i in range(4)}
    emails = {f"EMAIL{i}": _email(ledger, i) for i in range(4)}
    body = fixture(
        "sendgrid_events.json", P=p, TS=int(datetime.now(UTC).timestamp()), **mids, **emails
    ).encode()
    headers = key.headers(body)
    r = await stack.api.post(hook["path"], content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": 7, "recorded": 6, "duplicates": 0, "ignored": 1}
    r = await stack.api.post(hook["path"], content=body, headers=headers)
    assert r.json() == {"received": 7, "recorded": 0, "duplicates": 6, "ignored": 1}

    assert [t for t, _ in await interactions(stack, ledger.email_delivery[0])] == [
        "SENT",
        "DELIVERED",
        "OPENED",
    ]
    opened = dict(await interactions(stack, ledger.email_delivery[0]))["OPENED"]
    assert opened["providerReported"] is True and opened["provider"] == "sendgrid"
    assert await _bounced(stack, ledger) == {1}
    assert await suppressed(stack, "EMAIL") == {
        emails["EMAIL1"]: "HARD_BOUNCED",
        emails["EMAIL2"]: "COMPLAINED",
    }
    # The deferral is evidence only.
    assert await evidence(stack, ledger.email_delivery[3]) == [("sendgrid", "SOFT_BOUNCED", None)]
    stats = await ledger.stats()
    assert (stats["deliveredCount"], stats["bouncedCount"], stats["openedCount"]) == (1, 1, 1)

    # Tampered after signing; signed with another key; no signature; a stale signature of another body.
    tampered = body.replace(b'"delivered"', b'"bounce"   ')
    assert (await stack.api.post(hook["path"], content=tampered, headers=headers)).status_code == 401
    other = SendGridKey().headers(body)
    assert (await stack.api.post(hook["path"], content=body, headers=other)).status_code == 401
    r = await stack.api.post(hook["path"], content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    # A verified body that is not SendGrid's format: 400.
    odd = b'{"not": "a list"}'
    assert (await stack.api.post(hook["path"], content=odd, headers=key.headers(odd))).status_code == 400

    # An UNKNOWN send settles to SENT on SendGrid's delivered event (its smtp-id is our Message-ID).
    unknown = await make_unknown(stack, ledger.campaign_id, ledger.customers[4], "EMAIL")
    event = [
        {
            "email": _email(ledger, 4),
            "timestamp": int(datetime.now(UTC).timestamp()),
            "event": "delivered",
            "sg_event_id": f"{p}-settle",
            "smtp-id": "<ignored@example.com>",
            "deliveryId": unknown,
        }
    ]
    raw = json.dumps(event).encode()
    assert (await stack.api.post(hook["path"], content=raw, headers=key.headers(raw))).json()["recorded"] == 1
    assert await delivery(stack, unknown) == ("SENT", None)
    assert await evidence(stack, unknown) == [("sendgrid", "DELIVERED", "SENT")]
    stats = await ledger.stats()
    assert (stats["sentCount"], stats["unknownCount"]) == (5, 0)


async def test_mailgun(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    ledger = await _ledger(stack)
    signing_key = "key-" + secrets.token_hex(16)
    hook = await register(stack, "mailgun", secret=signing_key)
    p = secrets.token_hex(4)

    def body(i: int, event: str, severity: str, kind: str, at: float | None = None) -> bytes:
        mid = ledger.emails[i]["Message-ID"].strip("<>") if i in ledger.emails else "x@y"
        blanks = {
            "P": p,
            "KIND": kind,
            "EVENT": event,
            "SEVERITY": severity,
            "EMAIL": _email(ledger, i),
            "MID": mid,
        }
        return mailgun_body(signing_key, secrets.token_hex(25), at, **blanks)

    bounce = body(1, "failed", "permanent", "bounce")
    for _ in range(2):
        r = await stack.api.post(hook["path"], content=bounce, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
    assert r.json() == {"received": 1, "recorded": 0, "duplicates": 1, "ignored": 0}
    assert await _bounced(stack, ledger) == {1}
    complaint = body(2, "complained", "", "complaint")
    assert (await stack.api.post(hook["path"], content=complaint)).json()["recorded"] == 1
    temporary = body(3, "failed", "temporary", "soft")
    assert (await stack.api.post(hook["path"], content=temporary)).json()["recorded"] == 1
    assert await suppressed(stack, "EMAIL") == {
        _email(ledger, 1): "HARD_BOUNCED",
        _email(ledger, 2): "COMPLAINED",
    }
    assert await _bounced(stack, ledger) == {1}

    # Forged: a signature of another key; a stale timestamp; a wrong signature.
    forged = mailgun_body(
        "another-key", "tok" * 10, P=p, KIND="f", EVENT="complained", SEVERITY="", EMAIL="a@b.co", MID="m"
    )
    assert (await stack.api.post(hook["path"], content=forged)).status_code == 401
    stale = body(3, "complained", "", "stale", at=datetime.now(UTC).timestamp() - 3600)
    assert (await stack.api.post(hook["path"], content=stale)).status_code == 401
    unsigned = json.loads(complaint)
    unsigned["signature"]["signature"] = "0" * 64
    assert (await stack.api.post(hook["path"], content=json.dumps(unsigned).encode())).status_code == 401
    assert _email(ledger, 3) not in await suppressed(stack, "EMAIL")

    # An UNKNOWN send settles on its delivered event (named by our Message-ID).
    unknown = await make_unknown(stack, ledger.campaign_id, ledger.customers[4], "EMAIL")
    async with stack.engine.begin() as conn:
        await conn.execute(
            text("UPDATE deliveries SET provider_message_id = :m WHERE id = :i"),
            {"m": f"<{unknown}@club.example>", "i": unknown},
        )
    delivered = mailgun_body(
        signing_key,
        secrets.token_hex(25),
        P=p,
        KIND="delivered",
        EVENT="delivered",
        SEVERITY="",
        EMAIL=_email(ledger, 4),
        MID=f"{unknown}@club.example",
    )
    assert (await stack.api.post(hook["path"], content=delivered)).json()["recorded"] == 1
    assert await delivery(stack, unknown) == ("SENT", None)
    assert await evidence(stack, unknown) == [("mailgun", "DELIVERED", "SENT")]


async def test_postmark(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    ledger = await _ledger(stack)
    user, password = "postmark", secrets.token_urlsafe(16)
    hook = await register(stack, "postmark", username=user, password=password)
    auth = postmark_headers(user, password)
    n = secrets.randbelow(10**9)
    bounce = fixture(
        "postmark_bounce.json",
        ID=n,
        TYPE="HardBounce",
        DELIVERY_ID=ledger.email_delivery[1],
        EMAIL=_email(ledger, 1),
    )
    for _ in range(2):
        r = await stack.api.post(hook["path"], content=bounce.encode(), headers=auth)
        assert r.status_code == 200, r.text
    assert r.json() == {"received": 1, "recorded": 0, "duplicates": 1, "ignored": 0}
    spam = fixture(
        "postmark_spam.json", ID=n + 1, DELIVERY_ID=ledger.email_delivery[2], EMAIL=_email(ledger, 2)
    )
    assert (await stack.api.post(hook["path"], content=spam.encode(), headers=auth)).json()["recorded"] == 1
    soft = fixture(
        "postmark_bounce.json",
        ID=n + 2,
        TYPE="SoftBounce",
        DELIVERY_ID=ledger.email_delivery[3],
        EMAIL=_email(ledger, 3),
    )
    assert (await stack.api.post(hook["path"], content=soft.encode(), headers=auth)).json()["recorded"] == 1
    assert await suppressed(stack, "EMAIL") == {
        _email(ledger, 1): "HARD_BOUNCED",
        _email(ledger, 2): "COMPLAINED",
    }
    assert await _bounced(stack, ledger) == {1}
    # Wrong or missing credentials.
    for headers in (
        postmark_headers(user, "wrong"),
        postmark_headers("other", password),
        {"Content-Type": "application/json"},
        {"Authorization": "Basic !!!"},
    ):
        assert (await stack.api.post(hook["path"], content=spam.encode(), headers=headers)).status_code == 401
    # An UNKNOWN send settles on its Delivery record (metadata deliveryId).
    unknown = await make_unknown(stack, ledger.campaign_id, ledger.customers[4], "EMAIL")
    delivered = fixture(
        "postmark_delivery.json", PM_ID=secrets.token_hex(8), EMAIL=_email(ledger, 4), DELIVERY_ID=unknown
    )
    assert (await stack.api.post(hook["path"], content=delivered.encode(), headers=auth)).json()[
        "recorded"
    ] == 1
    assert await delivery(stack, unknown) == ("SENT", None)
    assert await evidence(stack, unknown) == [("postmark", "DELIVERED", "SENT")]
    # A bounce of an already bounced message does not move it; a delivery never downgrades a BOUNCED.
    late = fixture(
        "postmark_delivery.json",
        PM_ID=secrets.token_hex(8),
        EMAIL=_email(ledger, 1),
        DELIVERY_ID=ledger.email_delivery[1],
    )
    await stack.api.post(hook["path"], content=late.encode(), headers=auth)
    assert (await delivery(stack, ledger.email_delivery[1]))[0] == "SENT"


def _ses(kind: str, section: dict[str, Any], ledger: Ledger, i: int, delivery_id: str) -> str:
    mid = ledger.emails[i]["Message-ID"] if i in ledger.emails else f"<{delivery_id}@x>"
    return fixture(
        "ses_notification.json",
        TYPE=kind,
        SECTION=json.dumps({kind.lower(): section})[1:-1],
        EMAIL=_email(ledger, i),
        MID=mid,
        DELIVERY_ID=delivery_id,
    )


async def test_ses_through_sns(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    ledger = await _ledger(stack)
    signer = SnsSigner()
    hook = await register(stack, "ses", topicArn=TOPIC)
    api = sns_app(stack, signer)
    try:
        # The subscription is confirmed through the fetcher.
        confirm = signer.message(
            "SubscriptionConfirmation",
            {
                "MessageId": "c-1",
                "Token": "tok",
                "Message": "You have chosen to subscribe",
                "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=tok",
            },
        )
        assert (await api.post(hook["path"], content=confirm)).status_code == 200
        assert signer.fetched == [
            CERT_URL,
            "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=tok",
        ]

        p = secrets.token_hex(4)
        at = "2026-12-02T11:00:00.000Z"
        bounce = _ses(
            "Bounce",
            {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "timestamp": at,
                "bouncedRecipients": [{"emailAddress": _email(ledger, 1)}],
            },
            ledger,
            1,
            ledger.email_delivery[1],
        )
        body = signer.message("Notification", {"MessageId": f"{p}-b", "Message": bounce}, version="1")
        for _ in range(2):
            r = await api.post(hook["path"], content=body)
            assert r.status_code == 200, r.text
        assert r.json() == {"received": 1, "recorded": 0, "duplicates": 1, "ignored": 0}
        complaint = _ses(
            "Complaint",
            {
                "complainedRecipients": [{"emailAddress": _email(ledger, 2)}],
                "timestamp": at,
                "complaintFeedbackType": "abuse",
            },
            ledger,
            2,
            ledger.email_delivery[2],
        )
        r = await api.post(
            hook["path"],
            content=signer.message("Notification", {"MessageId": f"{p}-c", "Message": complaint}),
        )
        assert r.json()["recorded"] == 1
        assert await suppressed(stack, "EMAIL") == {
            _email(ledger, 1): "HARD_BOUNCED",
            _email(ledger, 2): "COMPLAINED",
        }
        assert await _bounced(stack, ledger) == {1}

        # Tampered message; another key; a certificate URL off amazonaws.com (never fetched); another topic.
        tampered = json.loads(body)
        tampered["Message"] = tampered["Message"].replace("Permanent", "Transient")
        tampered["MessageId"] = f"{p}-t"
        assert (await api.post(hook["path"], content=json.dumps(tampered).encode())).status_code == 401
        forged = SnsSigner().message("Notification", {"MessageId": f"{p}-f", "Message": complaint})
        assert (await api.post(hook["path"], content=forged)).status_code == 401
        fetched = len(signer.fetched)
        for url in (
            "https://sns.amazonaws.com.evil.example/cert.pem",
            "http://sns.us-east-1.amazonaws.com/c.pem",
        ):
            off = signer.message("Notification", {"MessageId": f"{p}-o", "Message": complaint}, cert_url=url)
            assert (await api.post(hook["path"], content=off)).status_code == 401
        assert len(signer.fetched) == fetched
        other_topic = json.loads(
            signer.message("Notification", {"MessageId": f"{p}-x", "Message": complaint})
        )
        other_topic["TopicArn"] = TOPIC + "-other"
        assert (await api.post(hook["path"], content=json.dumps(other_topic).encode())).status_code == 401

        # An UNKNOWN send settles on its Delivery (named by the X-Delivery-Id header SES echoes).
        unknown = await make_unknown(stack, ledger.campaign_id, ledger.customers[4], "EMAIL")
        delivered = _ses(
            "Delivery",
            {"timestamp": at, "recipients": [_email(ledger, 4)], "smtpResponse": "250 ok"},
            ledger,
            4,
            unknown,
        )
        r = await api.post(
            hook["path"],
            content=signer.message("Notification", {"MessageId": f"{p}-d", "Message": delivered}),
        )
        assert r.json()["recorded"] == 1
        assert await delivery(stack, unknown) == ("SENT", None)
        assert await evidence(stack, unknown) == [("ses", "DELIVERED", "SENT")]
    finally:
        await api.aclose()
