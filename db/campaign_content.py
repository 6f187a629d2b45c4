"""What a send needs of its campaign: its channels and the template content its run pinned."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import Channel
from core.experiments import ABTest
from db.ledger.runs import run_pins
from db.template_versions import template_content

_CAMPAIGN = text(
    "SELECT channels, email_template_id, sms_template_id, ab_test FROM campaigns"
    " WHERE id = :c AND tenant_id = :t"
)


@dataclass(frozen=True)
class SendContent:
    """`templates[channel]` is None for a channel the campaign does not send on; `missing` names a
    channel whose template no longer exists."""

    channels: list[str]
    templates: dict[Channel, Mapping[str, Any] | None]
    missing: Channel | None = None
    # An A/B test's templates per variant key (current versions; a subject override applied).
    variants: dict[str, dict[Channel, Mapping[str, Any] | None]] = field(default_factory=dict)


async def send_content(
    conn: AsyncConnection, *, campaign_id: str, tenant_id: str, run_id: str
) -> SendContent | None:
    """The campaign's channels and templates at the versions `run_id` pinned (current content when
    it pinned none); None when the campaign is not in this tenant."""
    campaign = (await conn.execute(_CAMPAIGN, {"c": campaign_id, "t": tenant_id})).mappings().first()
    if campaign is None:
        return None
    pins = await run_pins(conn, campaign_id, run_id)
    templates: dict[Channel, Mapping[str, Any] | None] = {Channel.EMAIL: None, Channel.SMS: None}
    for channel, template_id in (
        (Channel.EMAIL, campaign["email_template_id"]),
        (Channel.SMS, campaign["sms_template_id"]),
    ):
        if channel not in campaign["channels"]:
            continue
        pinned = await template_content(conn, tenant_id, template_id, channel, pins[channel])
        templates[channel] = None if pinned is None else dict(pinned)
        if templates[channel] is None:
            return SendContent(list(campaign["channels"]), templates, missing=channel)
    variants: dict[str, dict[Channel, Mapping[str, Any] | None]] = {}
    if campaign["ab_test"] is not None:
        test = ABTest.model_validate(campaign["ab_test"])
        for variant in test.variants:
            variants[variant.key] = {}
            for channel, template_id in (
                (Channel.EMAIL, variant.email_template_id or campaign["email_template_id"]),
                (Channel.SMS, variant.sms_template_id or campaign["sms_template_id"]),
            ):
                if channel not in campaign["channels"]:
                    variants[variant.key][channel] = None
                    continue
                found = await template_content(conn, tenant_id, template_id, channel, None)
                if found is None:
                    return SendContent(list(campaign["channels"]), templates, missing=channel)
                row = dict(found)
                if channel == Channel.EMAIL and variant.subject is not None:
                    row["subject"] = variant.subject
                variants[variant.key][channel] = row
    return SendContent(list(campaign["channels"]), templates, variants=variants)
