"""Seed copies (README "Experiments and checks before sending"): the tenant's seed addresses get a
copy of each campaign's first message per channel and A/B variant, for inbox monitoring. A copy is rendered as
that message's recipient, marked (`X-Campaigns-Seed: true`, an SMS prefix), sent once per seed,
campaign, channel and variant (db.test_sends.claim_seed_copies), and kept out of the ledger and the stats.
A copy that fails is recorded and never fails the page: the campaign's own messages come first.
"""

import logging
from collections.abc import Sequence

from activities.deps import ActivityDeps
from activities.send.identity import platform_sender, sms_client, smtp_pool
from activities.send.model import Content, Message, Outgoing
from activities.send.renderer import Renderer
from core.enums import Channel
from core.policy import Seeds
from db import test_sends
from providers.accounts import Sender
from providers.email_content import EmailEnvelope, wire_email
from providers.sms import SmsVerdict
from providers.smtp import SmtpVerdict

log = logging.getLogger(__name__)


async def send_seed_copies(
    deps: ActivityDeps,
    *,
    campaign_id: str,
    tenant_id: str,
    content: Content,
    messages: Sequence[Message],
    seeds: Seeds,
) -> None:
    firsts: dict[tuple[str, str | None], Message] = {}
    for m in messages:
        firsts.setdefault((m.channel, m.variant), m)
    for (channel, variant), first in firsts.items():
        addresses = seeds.of(channel)
        if not addresses:
            continue
        async with deps.engine.begin() as conn:
            won = await test_sends.claim_seed_copies(
                conn,
                tenant_id=tenant_id,
                campaign_id=campaign_id,
                channel=channel,
                variant=variant,
                addresses=addresses,
            )
        if not won:
            continue
        outcomes = await _copies(deps, campaign_id, tenant_id, content, first, won)
        async with deps.engine.begin() as conn:
            for address, sent, detail in outcomes:
                await test_sends.settle_seed_copy(conn, campaign_id, channel, variant, address, sent, detail)


async def _copies(
    deps: ActivityDeps, campaign_id: str, tenant_id: str, content: Content, first: Message, to: Sequence[str]
) -> list[tuple[str, bool, str]]:
    """Render `first` as its recipient and send it to each seed address: (address, sent, detail)."""
    try:
        rendered = await Renderer(deps.render_pool, tenant_id, content).render([first])
        if not rendered.ready:
            return [(a, False, "the message could not be rendered") for a in to]
        sender = content.sender or platform_sender(deps.settings)
        return [await _send(deps, campaign_id, tenant_id, rendered.ready[0], a, sender) for a in to]
    except Exception as err:  # a seed copy never fails the page
        log.warning("seed copies of campaign %s (%s) failed: %s", campaign_id, first.channel, err)
        return [(a, False, str(err)) for a in to]


async def _send(
    deps: ActivityDeps, campaign_id: str, tenant_id: str, item: Outgoing, address: str, sender: Sender
) -> tuple[str, bool, str]:
    """One copy, as the campaign's identity sends it (From, Reply-To, DKIM, account)."""
    if item.message.channel == Channel.EMAIL and item.parts is not None:
        envelope = EmailEnvelope(
            delivery_id=f"seed-{item.delivery_id}",
            campaign_id=campaign_id,
            tenant_id=tenant_id,
            customer_id=item.message.customer_id,
            sender=sender.email_from,
            to=address,
            mark="Seed",
            reply_to=sender.reply_to,
        )
        wire = wire_email(envelope, item.parts, deps.settings)
        data = sender.signed(wire.data)
        result = await smtp_pool(deps, sender).send(wire.sender, wire.to, data, wire.message_id)
        return address, result.verdict == SmtpVerdict.ACCEPTED, result.detail
    client = sms_client(deps, sender)
    sms = await client.send(address, f"[SEED] {item.body or ''}", f"seed-{item.delivery_id}-{address}")
    return address, sms.verdict == SmsVerdict.ACCEPTED, sms.detail
