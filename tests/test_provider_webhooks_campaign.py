"""One small real campaign, then each provider's word about its recipients, then the next
campaign: it skips a hard-bounced address (HARD_BOUNCED), a complainer (COMPLAINED) and a number
that replied STOP (UNSUBSCRIBED); a number that replied START again is sent to
(README "Provider webhooks")."""

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.fixtures.provider_webhooks.kit import (
    TOPIC,
    SendGridKey,
    SnsSigner,
    fixture,
    inbound,
    mailgun_body,
    postmark_headers,
    register,
    sns_app,
    twilio_post,
)
from tests.helpers import create_campaign, ledger, wait_for

TWILIO_TOKEN = "twilio-token-" + "0" * 20


async def _message_ids(stack: Stack, campaign_id: str) -> dict[str, tuple[str, str]]:
    """customer id -> (email delivery id, Message-ID) of the campaign's sent emails."""
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT customer_id, id, provider_message_id FROM deliveries"
                " WHERE campaign_id = :c AND channel = 'EMAIL' AND outcome = 'SENT'"
            ),
            {"c": campaign_id},
        )
        return {r[0]: (r[1], r[2]) for r in rows}


async def _run(
    stack: Stack, audience: Any, email_t: str, sms_t: str
) -> dict[tuple[str, str], tuple[str, str | None]]:
    cid = await create_campaign(stack, audience, email_t, sms_t)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED")
    return {
        (row["customerId"], row["channel"]): (row["outcome"], row["reason"])
        for row in await ledger(stack, cid)
    } | {("campaign", "id"): (cid, None)}


async def test_the_next_campaign_skips_what_providers_reported(make_stack: StackFactory) -> None:
    stack = await make_stack()
    audience = await make_audience(stack.engine, stack.tenant, 10)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    first = await _run(stack, audience, email_t, sms_t)
    c = audience.customers
    assert {v for k, v in first.items() if k[0] != "campaign"} == {("SENT", None)}
    sent = await _message_ids(stack, first[("campaign", "id")][0])
    now = int(datetime.now(UTC).timestamp())
    p = secrets.token_hex(4)

    # SendGrid: a hard bounce for customer 1 (named by the Message-ID we sent).
    key = SendGridKey()
    sendgrid = await register(stack, "sendgrid", publicKey=key.public_b64)
    events = [
        {
            "email": c[1]["email"],
            "timestamp": now,
            "event": "bounce",
            "type": "bounce",
            "smtp-id": sent[c[1]["id"]][1],
            "sg_event_id": f"{p}-b1",
            "reason": "550 5.1.1 unknown",
        }
    ]
    body = json.dumps(events).encode()
    assert (await stack.api.post(sendgrid["path"], content=body, headers=key.headers(body))).json()[
        "recorded"
    ] == 1
    # Mailgun: customer 2 complains.
    mailgun = await register(stack, "mailgun", secret="mg-key")
    body = mailgun_body(
        "mg-key",
        secrets.token_hex(25),
        P=p,
        KIND="c2",
        EVENT="complained",
        SEVERITY="",
        EMAIL=c[2]["email"],
        MID=sent[c[2]["id"]][1].strip("<>"),
    )
    assert (await stack.api.post(mailgun["path"], content=body)).json()["recorded"] == 1
    # Postmark: customer 3 hard-bounces.
    postmark = await register(stack, "postmark", username="pm", password="pm-pass")
    body = fixture(
        "postmark_bounce.json",
        ID=secrets.randbelow(10**9),
        TYPE="HardBounce",
        DELIVERY_ID=sent[c[3]["id"]][0],
        EMAIL=c[3]["email"],
    ).encode()
    r = await stack.api.post(postmark["path"], content=body, headers=postmark_headers("pm", "pm-pass"))
    assert r.json()["recorded"] == 1
    # SES: customer 4 complains.
    signer = SnsSigner()
    ses = await register(stack, "ses", topicArn=TOPIC)
    complaint = fixture(
        "ses_notification.json",
        TYPE="Complaint",
        SECTION=json.dumps(
            {
                "complaint": {
                    "complainedRecipients": [{"emailAddress": c[4]["email"]}],
                    "timestamp": "2026-12-02T11:00:00Z",
                }
            }
        )[1:-1],
        EMAIL=c[4]["email"],
        MID=sent[c[4]["id"]][1],
        DELIVERY_ID=sent[c[4]["id"]][0],
    )
    async with sns_app(stack, signer) as api:
        r = await api.post(
            ses["path"], content=signer.message("Notification", {"MessageId": f"{p}-s", "Message": complaint})
        )
        assert r.json()["recorded"] == 1
    # Twilio: customer 5 replies STOP; customer 6 replies STOP, then START.
    twilio = await register(stack, "twilio", secret=TWILIO_TOKEN)
    for sid, who, word in ((f"{p}a", 5, "STOP"), (f"{p}b", 6, "Stop"), (f"{p}c", 6, "START")):
        assert (
            await twilio_post(stack, twilio["url"], inbound(sid, c[who]["phone"], word), TWILIO_TOKEN)
        ).status_code == 200

    second = await _run(stack, audience, email_t, sms_t)
    skipped = {
        (c.index(next(x for x in c if x["id"] == k[0])), k[1]): v
        for k, v in second.items()
        if k[0] != "campaign" and v[0] != "SENT"
    }
    assert skipped == {
        (1, "EMAIL"): ("SKIPPED", "HARD_BOUNCED"),
        (2, "EMAIL"): ("SKIPPED", "COMPLAINED"),
        (3, "EMAIL"): ("SKIPPED", "HARD_BOUNCED"),
        (4, "EMAIL"): ("SKIPPED", "COMPLAINED"),
        (5, "SMS"): ("SKIPPED", "UNSUBSCRIBED"),
    }
    # What the sinks saw: customer 6 got both SMS, customer 5 only the first.
    assert stack.sms.counts({c[5]["phone"], c[6]["phone"]}) == {c[5]["phone"]: 1, c[6]["phone"]: 2}
    assert stack.smtp.counts({c[1]["email"], c[0]["email"]}) == {c[1]["email"]: 1, c[0]["email"]: 2}
