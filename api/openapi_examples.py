"""Example values of the OpenAPI document: the reference requests and responses the API was built
to, value for value, completed where this API answers with more fields (the `meta` of a list, the
extra counters of a campaign) so that each stays a valid answer. tests/test_openapi_docs.py checks
every example against the schema it illustrates.
"""

from typing import Any, TypedDict


class Example(TypedDict):
    summary: str
    value: Any


class OperationDoc(TypedDict, total=False):
    summary: str
    description: str
    parameters: dict[str, str]
    request: dict[str, Example]
    responses: dict[str, dict[str, Example]]


def example(value: Any, summary: str = "The reference example") -> Example:
    return {"summary": summary, "value": value}


# ---- the reference examples -----------------------------------------------------------------------

SEED_LIST_ITEM: dict[str, Any] = {
    "id": "campaign_123",
    "name": "Summer Tournament Promo",
    "type": "ONE_TIME",
    "status": "SCHEDULED",
    "channels": ["EMAIL", "SMS"],
    "segmentId": "segment_456",
    "scheduledAt": "2025-12-20T09:00:00Z",
    "targetCount": 500,
    "sentCount": 0,
    "openRate": None,
    "createdAt": "2025-12-14T10:00:00Z",
}

SEED_CAMPAIGN: dict[str, Any] = {
    "id": "campaign_123",
    "tenantId": "tenant_123",
    "clubId": "club_456",
    "name": "Summer Tournament Promo",
    "description": "Promotion for upcoming summer tournament",
    "type": "ONE_TIME",
    "status": "SCHEDULED",
    "channels": ["EMAIL", "SMS"],
    "segmentId": "segment_456",
    "segmentName": "Active Golfers",
    "emailTemplateId": "template_email_123",
    "smsTemplateId": "template_sms_456",
    "scheduledAt": "2025-12-20T09:00:00Z",
    "timezone": "Africa/Johannesburg",
    "targetCount": 500,
    "sentCount": 0,
    "deliveredCount": 0,
    "openedCount": 0,
    "clickedCount": 0,
    "createdBy": "user_123",
    "createdAt": "2025-12-14T10:00:00Z",
    "updatedAt": "2025-12-14T10:00:00Z",
}

# What GET /campaigns/:id shows beyond the reference example: every outcome counted, the lifecycle
# instants, the conversion and RECURRING/TRIGGERED fields.
CAMPAIGN_EXTRAS: dict[str, Any] = {
    "sourceCampaignId": None,
    "convertedCount": 0,
    "unsubscribedCount": 0,
    "bouncedCount": 0,
    "failedCount": 0,
    "skippedCount": 0,
    "unknownCount": 0,
    "openRate": None,
    "conversionEvent": None,
    "conversionWindowHours": None,
    "schedule": None,
    "nextRunAt": None,
    "lastRunAt": None,
    "runCount": 0,
    "triggerEvent": None,
    "triggerConditions": None,
    "startedAt": None,
    "pausedAt": None,
    "resumedAt": None,
    "cancelledAt": None,
    "completedAt": None,
    "lastError": None,
    "policy": None,
    "deliverAt": None,
    "waves": None,
    "holdoutPercent": 0.0,
    "abTest": None,
    "abWinner": None,
    "senderIdentityId": None,
    "expectedFinishAt": None,
    "approvedBy": None,
    "approvedAt": None,
}

SEED_CREATE: dict[str, Any] = {
    "tenantId": "tenant_123",
    "clubId": "club_456",
    "name": "December Newsletter",
    "description": "Monthly member newsletter",
    "type": "ONE_TIME",
    "segmentId": "segment_123",
    "channels": ["EMAIL", "SMS"],
    "emailTemplateId": "template_email_123",
    "smsTemplateId": "template_sms_456",
    "timezone": "Africa/Johannesburg",
}

# The reference "Campaign Types" snippets, each completed into a whole create request.
_COMMON_CREATE = {"tenantId": "tenant_123", "clubId": "club_456", "channels": ["EMAIL"]}
CREATE_BY_TYPE: dict[str, Example] = {
    "oneTimeScheduled": example(
        {
            **_COMMON_CREATE,
            "name": "Summer Tournament Promo",
            "emailTemplateId": "template_email_123",
            "type": "ONE_TIME",
            "segmentId": "segment_123",
            "scheduledAt": "2025-12-20T09:00:00Z",
        },
        "ONE_TIME, created and scheduled at once (the reference type example)",
    ),
    "recurring": example(
        {
            **_COMMON_CREATE,
            "name": "Monday tee times",
            "emailTemplateId": "template_email_123",
            "type": "RECURRING",
            "segmentId": "segment_123",
            "schedule": {
                "frequency": "weekly",
                "dayOfWeek": 1,
                "time": "09:00",
                "timezone": "Africa/Johannesburg",
            },
        },
        "RECURRING: weekly on Monday at 09:00 (the reference type example)",
    ),
    "triggered": example(
        {
            **_COMMON_CREATE,
            "name": "Welcome to your new tier",
            "emailTemplateId": "template_email_123",
            "type": "TRIGGERED",
            "triggerEvent": "scl.member.tier.changed",
            "triggerConditions": {"reason": "upgrade"},
        },
        "TRIGGERED by an event (the reference type example)",
    ),
}

SEED_UPDATE: dict[str, Any] = {
    "name": "Updated Campaign Name",
    "description": "Updated description",
    "segmentId": "segment_789",
}

SEED_STATS: dict[str, Any] = {
    "campaignId": "campaign_123",
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
    "timeline": [
        {"hour": "2025-12-14T09:00:00Z", "sent": 100, "opened": 45},
        {"hour": "2025-12-14T10:00:00Z", "sent": 385, "opened": 120},
    ],
}
# Beyond the reference example, so that every target is accounted for (500 = 485 sent + 15
# skipped); `runs` and `triggers` belong to RECURRING and TRIGGERED campaigns.
STATS_EXTRAS: dict[str, Any] = {
    "skippedCount": 15,
    "failedCount": 0,
    "unknownCount": 0,
    "runs": None,
    "triggers": None,
    "asOf": "2024-01-15T10:00:00Z",
    "rollupPending": 0,
    "holdout": None,
    "byVariant": None,
    "abDecision": None,
    # Honest engagement (README): human + machine = all; the human rates use human counts.
    "humanOpenedCount": 165,
    "machineOpenedCount": 50,
    "humanClickedCount": 80,
    "machineClickedCount": 9,
    "humanOpenRate": 0.3452,
    "humanClickRate": 0.4848,
    "humanConversionRate": 0.15,
    "rateBasis": "ALL",
    "timeline": [
        {"hour": "2025-12-14T09:00:00Z", "sent": 100, "opened": 45, "humanOpened": 30},
        {"hour": "2025-12-14T10:00:00Z", "sent": 385, "opened": 120, "humanOpened": 95},
    ],
}

SEED_INTERACTIONS: dict[str, Any] = {
    "data": [
        {
            "id": "interaction_123",
            "customerId": "customer_456",
            "customerEmail": "john@example.com",
            "customerName": "John Smith",
            "type": "CLICKED",
            "channel": "EMAIL",
            "occurredAt": "2025-12-14T09:15:30Z",
            "metadata": {"linkId": "link_123", "linkUrl": "https://example.com/offer"},
        }
    ],
    "meta": {"total": 89, "skip": 0, "take": 25},
}
# Each open and click says whether a person or a machine made it, and why (README "Honest engagement").
INTERACTION_EXTRAS: dict[str, Any] = {"class": "human", "classReason": "no-machine-signal"}

COMPLETED = "The reference example, with the fields this API adds"
