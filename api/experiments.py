"""A/B tests at the API edge (README "A/B tests"): what a test may refer to, and how it is shown."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from api.errors import Problem
from core.experiments import ABTest, Lift, Metric, VariantCounts, lift
from db import experiments
from db.templates_lookup import template_channels


async def check_ab_test(conn: AsyncConnection, tenant_id: str, test: ABTest, channels: list[str]) -> None:
    """Each variant's templates exist in the tenant, on their channel, for a channel the campaign
    sends on (else 422)."""
    wanted = {
        (i, channel, template_id)
        for i, v in enumerate(test.variants)
        for channel, template_id in (("EMAIL", v.email_template_id), ("SMS", v.sms_template_id))
        if template_id is not None
    }
    found = await template_channels(conn, tenant_id, [t for _, _, t in wanted])
    errors = []
    for i, channel, template_id in sorted(wanted):
        path = f"$.abTest.variants[{i}].{'email' if channel == 'EMAIL' else 'sms'}TemplateId"
        if channel not in channels:
            errors.append({"path": path, "message": f"the campaign does not send {channel}"})
        elif found.get(template_id) != channel:
            errors.append({"path": path, "message": f"no {channel} template {template_id} in this tenant"})
    if errors:
        raise Problem(422, "the A/B test refers to templates it cannot use", errors=errors)


def rates(c: VariantCounts) -> dict[str, float | None]:
    def ratio(hits: int, trials: int) -> float | None:
        return round(hits / trials, 4) if trials else None

    return {
        "openRate": ratio(*c.rate(Metric.OPEN_RATE)),
        "clickRate": ratio(*c.rate(Metric.CLICK_RATE)),
        "conversionRate": ratio(*c.rate(Metric.CONVERSION_RATE)),
    }


async def experiment_view(conn: AsyncConnection, campaign_id: str, tenant_id: str) -> dict[str, Any] | None:
    """The test, its winner and decision, and each variant's counts and rates (`byVariant`)."""
    stored = await experiments.experiment(conn, campaign_id, tenant_id)
    if stored is None:
        return None
    if stored["ab_test"] is None:
        return {"campaignId": campaign_id, "abTest": None, "winner": None, "decision": None, "byVariant": []}
    test = ABTest.model_validate(stored["ab_test"])
    counts = await experiments.variant_counts(conn, campaign_id, test)
    return {
        "campaignId": campaign_id,
        "abTest": test.model_dump(mode="json", by_alias=True),
        "winner": stored["ab_winner"],
        "decision": stored["ab_decision"],
        "byVariant": [
            {
                "variant": c.key,
                "sent": c.sent,
                "delivered": c.delivered,
                "opened": c.opened,
                "clicked": c.clicked,
                "converted": c.converted,
                **rates(c),
            }
            for c in counts
        ],
    }


async def holdout_view(conn: AsyncConnection, campaign_id: str) -> Lift:
    """The holdout group against the messaged recipients: rates, difference, lift, intervals."""
    messaged, converted, held_out, held_out_converted = await experiments.holdout_groups(conn, campaign_id)
    return lift(messaged, converted, held_out, held_out_converted)


async def experiment_stats(conn: AsyncConnection, campaign_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """`/stats`' A/B part: `byVariant` (they add up to the messaged recipients) and the decision."""
    if row.get("ab_test") is None:
        return {}
    view = await experiment_view(conn, campaign_id, row["tenant_id"])
    if view is None:
        return {}
    return {"by_variant": view["byVariant"], "ab_decision": view["decision"]}
