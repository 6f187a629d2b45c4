"""What a send needs of its campaign: its channels and the template content its run pinned."""

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import Channel
from db.ledger.runs import run_pins
from db.template_versions import template_content

_CAMPAIGN = text(
    "SELECT channels, email_template_id, sms_template_id FROM campaigns WHERE id = :c AND tenant_id = :t"
)


@dataclass(frozen=True)
class SendContent:
    """`templates[channel]` is None for a channel the campaign does not send on; `missing` names a
    channel whose template no longer exists."""

    channels: list[str]
    templates: dict[Channel, RowMapping | None]
    missing: Channel | None = None


async def send_content(
    conn: AsyncConnection, *, campaign_id: str, tenant_id: str, run_id: str
) -> SendContent | None:
    """The campaign's channels and templates at the versions `run_id` pinned (current content when
    it pinned none); None when the campaign is not in this tenant."""
    campaign = (await conn.execute(_CAMPAIGN, {"c": campaign_id, "t": tenant_id})).mappings().first()
    if campaign is None:
        return None
    pins = await run_pins(conn, campaign_id, run_id)
    templates: dict[Channel, RowMapping | None] = {Channel.EMAIL: None, Channel.SMS: None}
    for channel, template_id in (
        (Channel.EMAIL, campaign["email_template_id"]),
        (Channel.SMS, campaign["sms_template_id"]),
    ):
        if channel not in campaign["channels"]:
            continue
        templates[channel] = await template_content(conn, tenant_id, template_id, channel, pins[channel])
        if templates[channel] is None:
            return SendContent(list(campaign["channels"]), templates, missing=channel)
    return SendContent(list(campaign["channels"]), templates)
