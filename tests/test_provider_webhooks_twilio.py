"""Provider webhook registrations, and Twilio: signed status callbacks settle and suppress, inbound
STOP/START/HELP keywords (README "Provider webhooks")."""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from db.tenant_settings import WorkspaceSettings, put_workspace_settings
from providers.sms import SmsClient
from tests.conftest import Stack, StackFactory
from tests.fixtures.provider_webhooks.kit import (
    SendGridKey,
    admin,
    delivery,
    evidence,
    fixture,
    inbound,
    interactions,
    make_unknown,
    register,
    suppressed,
    twilio_post,
)
from tests.test_stats import build_ledger

TOKEN = "twilio-auth-token-0123456789abcdef"


async def test_registrations_are_tenant_admin_resources_that_never_show_their_secret(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(worker=False)
    hook = await register(stack, "twilio", secret=TOKEN)
    assert set(hook) == {"id", "tenantId", "provider", "url", "createdBy", "createdAt", "path"}
    assert hook["url"] == f"http://testserver/webhooks/providers/twilio/{hook['id']}"
    async with stack.engine.connect() as conn:
        sealed = (
            await conn.execute(
                text("SELECT credentials FROM provider_webhooks WHERE id = :i"), {"i": hook["id"]}
            )
        ).scalar_one()
    assert TOKEN not in sealed
    listed = await stack.api.get(
        "/provider-webhooks", params={"tenantId": stack.tenant}, headers=admin(stack)
    )
    assert [h["id"] for h in listed.json()["data"]] == [hook["id"]] and TOKEN not in listed.text
    one = await stack.api.get(f"/provider-webhooks/{hook['id']}", headers=admin(stack))
    assert one.status_code == 200 and TOKEN not in one.text
    # Not an admin: 403; another tenant's admin: 404, like a missing one.
    r = await stack.call("GET", f"/provider-webhooks/{hook['id']}")
    assert r.status_code == 403
    other = admin(stack, stack.other_tenant)
    assert (await stack.api.get(f"/provider-webhooks/{hook['id']}", headers=other)).status_code == 404
    assert (await stack.api.delete(f"/provider-webhooks/{hook['id']}", headers=other)).status_code == 404
    r = await stack.api.post(
        "/provider-webhooks",
        json={"tenantId": stack.tenant, "provider": "twilio", "secret": "x"},
        headers=other,
    )
    assert r.status_code == 403  # another tenant named in the body, as everywhere
    r = await stack.api.get("/provider-webhooks", params={"tenantId": stack.tenant}, headers=other)
    assert r.status_code == 403
    # Each provider takes exactly its own credentials.
    bad: list[dict[str, Any]] = [
        {"provider": "twilio"},
        {"provider": "twilio", "secret": "x", "publicKey": SendGridKey().public_b64},
        {"provider": "sendgrid", "publicKey": "bm90IGEga2V5"},
        {"provider": "mailgun", "username": "u", "password": "p"},
        {"provider": "postmark", "username": "u"},
        {"provider": "ses", "topicArn": "arn:aws:sqs:us-east-1:123456789012:q"},
        {"provider": "vonage", "secret": "x"},
    ]
    for body in bad:
        r = await stack.api.post(
            "/provider-webhooks", json={"tenantId": stack.tenant, **body}, headers=admin(stack)
        )
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", body
    # Deleted: the provider's next request finds nothing.
    assert (
        await stack.api.delete(f"/provider-webhooks/{hook['id']}", headers=admin(stack))
    ).status_code == 204
    form = fixture("twilio_status.txt", SID="SM1", STATUS="delivered", TO="%2B27830000000", ERROR="")
    assert (await twilio_post(stack, hook["url"], form, TOKEN)).status_code == 401
    # Unknown registrations and providers: the same 401.
    for path in (
        f"/webhooks/providers/sendgrid/{hook['id']}",
        "/webhooks/providers/vonage/x",
        "/webhooks/providers/twilio/pwebhook_nope",
    ):
        r = await stack.api.post(path, content=form.encode())
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"


async def _ledger(stack: Stack) -> Any:
    now = datetime.now(UTC) - timedelta(hours=1)
    return await build_ledger(stack, targets=5, email_sent=0, sms_sent=4, sent_at=lambda i: now)


async def test_status_callbacks_settle_unknown_sends_and_suppress_dead_numbers(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(worker=False)
    ledger = await _ledger(stack)
    hook = await register(stack, "twilio", secret=TOKEN)
    # A send whose answer never came: Twilio's callback names it by the deliveryId we put
    # on the status callback URL (signed with the URL).
    # (Customer 4 was not sent to: its row becomes the UNKNOWN one, with no SENT recorded.)
    unknown = await make_unknown(stack, ledger.campaign_id, ledger.customers[4], "SMS")
    url = f"{hook['url']}?deliveryId={unknown}"
    form = fixture("twilio_status.txt", SID="SMunknown0", STATUS="delivered", TO="%2B27830000000", ERROR="")
    for _ in range(2):  # replayed: recorded once
        r = await twilio_post(stack, url, form, TOKEN)
        assert r.status_code == 200, r.text
    assert r.json() == {"received": 1, "recorded": 0, "duplicates": 1, "ignored": 0}
    assert await delivery(stack, unknown) == ("SENT", None)
    assert await evidence(stack, unknown) == [("twilio", "DELIVERED", "SENT")]
    assert [t for t, _ in await interactions(stack, unknown)] == ["DELIVERED", "SENT"]
    stats = await ledger.stats()
    assert stats["byChannel"]["SMS"]["delivered"] == 1 and stats["unknownCount"] == 0
    # The interactions page lists the settled message's SENT once (from its ledger row, not from
    # the interaction that counts it), and its total counts it once: 4 sent, 1 settled.
    r = await stack.call(
        "GET", f"/campaigns/{ledger.campaign_id}/interactions", tenant=ledger.tenant, params={"type": "SENT"}
    )
    listed = r.json()
    assert [i["id"] for i in listed["data"]].count(unknown) == 1
    assert listed["meta"]["total"] == len(listed["data"]) == 5

    # Tampered: another status, the signature of the original; no signature; the wrong token.
    tampered = form.replace("delivered", "undelivered")
    assert (await twilio_post(stack, url, tampered, TOKEN, sign_as=form)).status_code == 401
    assert (await twilio_post(stack, url, form, "wrong-token")).status_code == 401
    other_delivery = f"{hook['url']}?deliveryId={ledger.sms_delivery[1]}"
    r = await stack.api.post(
        other_delivery.removeprefix("http://testserver"),
        content=form.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "AAAA"},
    )
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"

    # A permanent failure (30006: landline) by the sid the ledger stores: the number is suppressed.
    form = fixture(
        "twilio_status.txt", SID=ledger.sms_sid[2], STATUS="undelivered", TO="%2B27830000002", ERROR="30006"
    )
    r = await twilio_post(stack, hook["url"], form, TOKEN)
    assert r.json()["recorded"] == 1
    assert (await suppressed(stack, "SMS")) == {"+27830000002": "SUPPRESSED"}
    # A temporary one (30008: unknown error) suppresses nothing.
    form = fixture(
        "twilio_status.txt", SID=ledger.sms_sid[3], STATUS="undelivered", TO="%2B27830000003", ERROR="30008"
    )
    assert (await twilio_post(stack, hook["url"], form, TOKEN)).json()["recorded"] == 1
    assert "+27830000003" not in await suppressed(stack, "SMS")
    assert (await ledger.stats())["byChannel"]["SMS"]["failed"] == 2


async def test_inbound_keywords(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    hook = await register(stack, "twilio", secret=TOKEN)
    number = "+27831234567"
    r = await twilio_post(stack, hook["url"], inbound("SMin1", number, "  stop "), TOKEN)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    assert "<Message>" not in r.text
    assert await suppressed(stack, "SMS") == {number: "UNSUBSCRIBED"}
    # START undoes it; a replay of the STOP changes nothing.
    await twilio_post(stack, hook["url"], inbound("SMin2", number, "Start"), TOKEN)
    assert await suppressed(stack, "SMS") == {}
    await twilio_post(stack, hook["url"], inbound("SMin1", number, "  stop "), TOKEN)
    assert await suppressed(stack, "SMS") == {}
    # Each STOP word; an operator's own entry survives a START.
    for i, word in enumerate(["STOPALL", "unsubscribe", "CANCEL", "end", "Quit"]):
        await twilio_post(stack, hook["url"], inbound(f"SMw{i}", f"+2783765432{i}", word), TOKEN)
    assert set((await suppressed(stack, "SMS")).values()) == {"UNSUBSCRIBED"}
    assert len(await suppressed(stack, "SMS")) == 5
    r = await stack.call(
        "POST", "/suppressions", json={"tenantId": stack.tenant, "channel": "SMS", "address": number}
    )
    assert r.status_code == 201
    for i, word in enumerate(["YES", "UNSTOP"]):
        await twilio_post(stack, hook["url"], inbound(f"SMy{i}", number, word), TOKEN)
    assert (await suppressed(stack, "SMS"))[number] is None
    # HELP answers with the help text; other words are just messages.
    r = await twilio_post(stack, hook["url"], inbound("SMh", number, "help"), TOKEN)
    assert r.text.endswith(
        "<Response><Message>Reply STOP to unsubscribe, START to subscribe again.</Message></Response>"
    )
    r = await twilio_post(stack, hook["url"], inbound("SMx", number, "stop it please"), TOKEN)
    assert "<Message>" not in r.text and len(await suppressed(stack, "SMS")) == 6
    # The tenant's own help text, once set.
    async with stack.engine.begin() as conn:
        await put_workspace_settings(
            conn, stack.tenant, WorkspaceSettings(sms_help_text="Club & co: call <123>")
        )
    r = await twilio_post(stack, hook["url"], inbound("SMh2", number, "INFO"), TOKEN)
    assert r.text.endswith("<Response><Message>Club &amp; co: call &lt;123&gt;</Message></Response>")
    # Bodies are bounded before anything reads them.
    big = inbound("SMbig", number, "x" * (stack.settings.max_body_bytes + 1))
    assert (await twilio_post(stack, hook["url"], big, TOKEN)).status_code == 413
    # Tampered inbound: nothing happens.
    forged = inbound("SMf", "+27831111111", "STOP")
    r = await twilio_post(stack, hook["url"], forged, TOKEN, sign_as=inbound("SMf", "+27831111111", "HELLO"))
    assert r.status_code == 401 and "+27831111111" not in await suppressed(stack, "SMS")


def test_sms_client_asks_for_status_callbacks_by_delivery_id() -> None:
    client = SmsClient(
        "http://127.0.0.1:1/messages",
        "t",
        "+15550000000",
        status_callback="https://api.example.com/webhooks/providers/twilio/pw_1",
    )
    request = client._request("+27830000000", "hi", "delivery_abc")
    assert request.endswith(
        b"&StatusCallback=https%3A%2F%2Fapi.example.com%2Fwebhooks%2Fproviders%2Ftwilio%2Fpw_1%3FdeliveryId%3Ddelivery_abc"
    )
    plain = SmsClient("http://127.0.0.1:1/messages", "t", "+15550000000")._request("+27830000000", "hi", "d")
    assert b"StatusCallback" not in plain
