"""Test sends (README "Test sends"): the campaign's current content, rendered as one customer (or
its first member, or a made-up one), sent to the given addresses only, marked as a test, and
recorded apart from the ledger so that no stat counts it. Any status; at most TEST_SEND_LIMIT
test messages per tenant every TEST_SEND_WINDOW, so the door is not a bulk-send bypass. A test goes
out as the campaign would: from its sender identity, DKIM-signed, through its provider accounts
(providers.senders).
"""

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.errors import Problem
from api.schemas.test_sends import TestSendBody, TestSendOutcome
from core.enums import Channel
from core.ids import new_id
from core.settings import Settings
from db import estimate as audience_reads
from db import test_sends
from db.audience import member_ids_after
from db.campaign_content import SendContent
from db.segments import load_segment
from providers.accounts import Sender, twilio_client
from providers.email_content import EmailEnvelope, EmailParts, wire_email
from providers.render_pool import EmailSource, RenderPool, RenderProblem
from providers.rendering import recipient_context
from providers.senders import SenderUnusable, resolve_sender
from providers.sms import SmsClient, SmsVerdict
from providers.smtp import SmtpConfig, SmtpPool, SmtpVerdict

TEST_SEND_LIMIT = 50
TEST_SEND_WINDOW = timedelta(minutes=10)
SAMPLE = {"id": "customer_test", "first_name": "Test", "last_name": "Recipient", "attributes": {}}


async def sample_customer(
    conn: AsyncConnection, tenant_id: str, segment_id: str | None, customer_id: str | None
) -> dict[str, Any]:
    """Who the test renders as: the given customer (404 when not the tenant's), else the
    segment's first member, else a made-up recipient."""
    if customer_id is not None:
        rows = await audience_reads.recipients(conn, tenant_id, [customer_id])
        if not rows:
            raise Problem(404, f"customer {customer_id} not found")
        return dict(rows[0])
    segment = await load_segment(conn, tenant_id, segment_id) if segment_id else None
    if segment is not None:
        ids = await member_ids_after(conn, segment, None, 1)
        rows = await audience_reads.recipients(conn, tenant_id, ids) if ids else []
        if rows:
            return dict(rows[0])
    return dict(SAMPLE)


async def check_budget(conn: AsyncConnection, tenant_id: str, wanted: int) -> None:
    used = await test_sends.sent_recently(conn, tenant_id, TEST_SEND_WINDOW)
    if used + wanted > TEST_SEND_LIMIT:
        raise Problem(
            429,
            f"at most {TEST_SEND_LIMIT} test messages per {int(TEST_SEND_WINDOW.total_seconds() // 60)}"
            f" minutes per tenant; {used} sent",
        )


async def send_tests(
    *,
    engine: AsyncEngine,
    settings: Settings,
    pool: RenderPool,
    campaign_id: str,
    tenant_id: str,
    content: SendContent,
    customer: Mapping[str, Any],
    body: TestSendBody,
) -> list[TestSendOutcome]:
    """Render once per channel and send to each address, as the campaign would send (its sender
    identity, DKIM key and provider accounts); what each provider said."""
    ctx = recipient_context(dict(customer))
    channels = [c for c, wanted in ((Channel.EMAIL, body.emails), (Channel.SMS, body.phones)) if wanted]
    try:
        sender = await resolve_sender(engine, settings, campaign_id, tenant_id, channels)
    except SenderUnusable as err:
        raise Problem(409, f"the campaign cannot send as it is set up: {err}") from None
    outcomes: list[TestSendOutcome] = []
    if body.emails:
        outcomes += await _emails(settings, pool, sender, campaign_id, tenant_id, content, ctx, body.emails)
    if body.phones:
        outcomes += await _sms(settings, pool, sender, tenant_id, content, ctx, body.phones)
    return outcomes


async def _emails(
    settings: Settings,
    pool: RenderPool,
    sender: Sender,
    campaign_id: str,
    tenant_id: str,
    content: SendContent,
    ctx: dict[str, Any],
    to: Sequence[str],
) -> list[TestSendOutcome]:
    template = content.templates.get(Channel.EMAIL)
    if template is None:
        raise Problem(409, "the campaign does not send email")
    source = EmailSource(template["subject"], template["html"], template["text"])
    (parts,) = await pool.render_email(tenant_id, source, [ctx])
    if isinstance(parts, RenderProblem):
        raise Problem(422, f"the email template cannot be rendered: {parts}")
    parts = EmailParts(f"[TEST] {parts.subject}", parts.html, parts.text, parts.links)
    account = sender.smtp_account
    smtp = SmtpPool(SmtpConfig.platform(settings, pool_size=1) if account is None else account.config(1))
    outcomes: list[TestSendOutcome] = []
    try:
        for address in to:
            envelope = EmailEnvelope(
                delivery_id=new_id("test"),
                campaign_id=campaign_id,
                tenant_id=tenant_id,
                customer_id=str(ctx.get("id") or SAMPLE["id"]),
                sender=sender.email_from,
                to=address,
                mark="Test",
                reply_to=sender.reply_to,
            )
            wire = wire_email(envelope, parts, settings)
            data = sender.signed(wire.data)  # DKIM last, as in a campaign
            result = await smtp.send(wire.sender, wire.to, data, wire.message_id)
            sent = result.verdict == SmtpVerdict.ACCEPTED
            outcomes.append(
                TestSendOutcome(channel="EMAIL", address=address, sent=sent, detail=result.detail)
            )
    finally:
        await smtp.close()
    return outcomes


async def _sms(
    settings: Settings,
    pool: RenderPool,
    sender: Sender,
    tenant_id: str,
    content: SendContent,
    ctx: dict[str, Any],
    to: Sequence[str],
) -> list[TestSendOutcome]:
    template = content.templates.get(Channel.SMS)
    if template is None:
        raise Problem(409, "the campaign does not send SMS")
    (text,) = await pool.render_sms(tenant_id, template["body"], [ctx])
    if isinstance(text, RenderProblem):
        raise Problem(422, f"the SMS template cannot be rendered: {text}")
    if sender.sms_account is None:
        client = SmsClient(settings.sms_url, settings.sms_token, sender.sms_from, max_in_flight=1)
    else:
        client = twilio_client(sender.sms_account, sender.sms_from, max_in_flight=1)
    outcomes: list[TestSendOutcome] = []
    try:
        for number in to:
            result = await client.send(number, f"[TEST] {text}", new_id("test"))
            sent = result.verdict == SmsVerdict.ACCEPTED
            outcomes.append(TestSendOutcome(channel="SMS", address=number, sent=sent, detail=result.detail))
    finally:
        await client.close()
    return outcomes


def records(
    tenant_id: str, campaign_id: str, by: str, outcomes: Sequence[TestSendOutcome]
) -> list[test_sends.TestSendRow]:
    return [
        test_sends.TestSendRow(
            id=new_id("test"),
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            channel=o.channel,
            address=o.address,
            outcome="SENT" if o.sent else "FAILED",
            detail=(o.detail or "")[:500] or None,
            created_by=by,
        )
        for o in outcomes
    ]
