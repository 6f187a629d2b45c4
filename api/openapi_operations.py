"""The operations of the OpenAPI document: for each (method, path), its title, notes and examples.

`SEED_OPERATIONS` are the reference endpoints the API was specified with, under their titles;
`CONTRACT_OPERATIONS` the request bodies of the audience and content endpoints as the README's
walk-through sends them. api.openapi_docs applies both to the built document.
"""

from api.openapi_examples import (
    CAMPAIGN_EXTRAS,
    COMPLETED,
    CREATE_BY_TYPE,
    INTERACTION_EXTRAS,
    SEED_CAMPAIGN,
    SEED_CREATE,
    SEED_INTERACTIONS,
    SEED_LIST_ITEM,
    SEED_STATS,
    SEED_UPDATE,
    STATS_EXTRAS,
    OperationDoc,
    example,
)

# Keyed by (method, OpenAPI path): the reference endpoints, with their titles and notes.
SEED_OPERATIONS: dict[tuple[str, str], OperationDoc] = {
    ("get", "/campaigns"): {
        "summary": "List Campaigns",
        "description": "The tenant's campaigns, newest first, filtered by club, status and type; "
        "`skip`/`take` page through them and `meta.total` counts them all.",
        "parameters": {
            "status": "DRAFT, SCHEDULED, ACTIVE, PAUSED, COMPLETED, CANCELLED",
            "type": "ONE_TIME, RECURRING, TRIGGERED, JOURNEY",
        },
        "responses": {
            "200": {
                "seed": example(
                    {"data": [SEED_LIST_ITEM], "meta": {"total": 1, "skip": 0, "take": 25}},
                    "The reference example, with the page's `meta`",
                )
            }
        },
    },
    ("get", "/campaigns/{campaign_id}"): {
        "summary": "Get Campaign",
        "description": "One campaign with its counts (the same as `/stats`).",
        "responses": {"200": {"seed": example({**SEED_CAMPAIGN, **CAMPAIGN_EXTRAS}, COMPLETED)}},
    },
    ("post", "/campaigns"): {
        "summary": "Create Campaign",
        "description": "Creates a campaign in `DRAFT`. With an `Idempotency-Key` header, the same key "
        "and body give the same campaign (201, then 200); another body under the key is 409.",
        "request": {"seed": example(SEED_CREATE), **CREATE_BY_TYPE},
        "responses": {
            "201": {
                "seed": example(
                    {
                        **SEED_CAMPAIGN,
                        **CAMPAIGN_EXTRAS,
                        **SEED_CREATE,
                        "id": "campaign_123",
                        "status": "DRAFT",
                        "segmentName": "Active Golfers",
                        "scheduledAt": None,
                        "targetCount": None,
                    },
                    "The campaign created from the reference request",
                )
            }
        },
    },
    ("patch", "/campaigns/{campaign_id}"): {
        "summary": "Update Campaign",
        "description": "Note: Only DRAFT campaigns can have their segment or templates changed (also "
        "channels, schedule and trigger; else 409). Name and description change in any status but "
        "COMPLETED and CANCELLED, which are read-only.",
        "request": {"seed": example(SEED_UPDATE)},
        "responses": {
            "200": {
                "seed": example(
                    {
                        **SEED_CAMPAIGN,
                        **CAMPAIGN_EXTRAS,
                        **SEED_UPDATE,
                        "status": "DRAFT",
                        "segmentName": "Lapsed Members",
                        "scheduledAt": None,
                        "targetCount": None,
                        "updatedAt": "2025-12-14T10:05:00Z",
                    },
                    "The DRAFT campaign after the reference update",
                )
            }
        },
    },
    ("post", "/campaigns/{campaign_id}/schedule"): {
        "summary": "Schedule Campaign",
        "description": "From DRAFT, or SCHEDULED to move the time. `scheduledAt` must be in the "
        "future (422); without an offset it is read in the campaign's `timezone`. `targetCount` is "
        "the segment's size now; the snapshot fixes it when sending starts.",
        "request": {"seed": example({"scheduledAt": "2025-12-20T09:00:00Z"})},
        "responses": {
            "200": {
                "seed": example(
                    {
                        "id": "campaign_123",
                        "status": "SCHEDULED",
                        "scheduledAt": "2025-12-20T09:00:00Z",
                        "targetCount": 500,
                    }
                )
            }
        },
    },
    ("post", "/campaigns/{campaign_id}/execute"): {
        "summary": "Execute Campaign Immediately",
        "description": "From DRAFT or SCHEDULED: starts sending now. A campaign whose segment or "
        "templates are missing, or a channel without its template, is refused with 422.",
        "responses": {
            "200": {
                "seed": example(
                    {
                        "id": "campaign_123",
                        "status": "ACTIVE",
                        "startedAt": "2025-12-14T10:00:00Z",
                        "targetCount": 500,
                    }
                )
            }
        },
    },
    ("post", "/campaigns/{campaign_id}/pause"): {
        "summary": "Pause Campaign",
        "description": "Pauses an active campaign. When the answer comes, no new message is started; "
        "`sentCount` counts what was sent.",
        "responses": {
            "200": {
                "seed": example(
                    {
                        "id": "campaign_123",
                        "status": "PAUSED",
                        "pausedAt": "2025-12-14T10:30:00Z",
                        "sentCount": 250,
                    }
                )
            }
        },
    },
    ("post", "/campaigns/{campaign_id}/resume"): {
        "summary": "Resume Campaign",
        "description": "Resumes a paused campaign with exactly the recipients not yet sent.",
        "responses": {
            "200": {
                "seed": example(
                    {"id": "campaign_123", "status": "ACTIVE", "resumedAt": "2025-12-14T11:00:00Z"}
                )
            }
        },
    },
    ("post", "/campaigns/{campaign_id}/cancel"): {
        "summary": "Cancel Campaign",
        "description": "Cancels a scheduled, active or paused campaign; sending stops as with pause.",
        "responses": {
            "200": {
                "seed": example(
                    {
                        "id": "campaign_123",
                        "status": "CANCELLED",
                        "cancelledAt": "2025-12-14T10:00:00Z",
                        "sentCount": 0,
                    }
                )
            }
        },
    },
    ("get", "/campaigns/{campaign_id}/stats"): {
        "summary": "Get Campaign Stats",
        "description": "Top-level counts are distinct recipients, `byChannel` counts messages. "
        "`deliveryRate = delivered/sent`, `openRate = opened/delivered`, `clickRate = clicked/opened`, "
        "`conversionRate = converted/clicked`. `timeline` buckets each recipient in the UTC hour of "
        "its first such interaction. RECURRING campaigns add `runs`, TRIGGERED ones `triggers`.",
        "responses": {
            "200": {"seed": example({**SEED_STATS, **STATS_EXTRAS}, COMPLETED + " (nothing unaccounted for)")}
        },
    },
    ("get", "/campaigns/{campaign_id}/interactions"): {
        "summary": "Get Campaign Interactions",
        "description": "Newest first, filtered by `type`, `channel` and `customerId`; `meta.total` is exact.",
        "parameters": {
            "type": "SENT, DELIVERED, OPENED, CLICKED, CONVERTED, UNSUBSCRIBED, BOUNCED (and FAILED, an SMS "
            "the provider could not deliver)",
            "channel": "EMAIL or SMS",
            "customerId": "One recipient's interactions",
        },
        "responses": {
            "200": {
                "seed": example(
                    {**SEED_INTERACTIONS, "data": [{**SEED_INTERACTIONS["data"][0], **INTERACTION_EXTRAS}]},
                    COMPLETED,
                )
            }
        },
    },
}

# Request bodies of the audience and content endpoints, as the reference lists them and the
# README's walk-through sends them.
CONTRACT_OPERATIONS: dict[tuple[str, str], OperationDoc] = {
    ("get", "/campaigns/{campaign_id}/recipients"): {
        "parameters": {
            "outcome": "PENDING, SENT, SKIPPED, FAILED, BOUNCED, UNKNOWN",
            "channel": "EMAIL or SMS",
            "customerId": "One recipient's rows",
        }
    },
    ("post", "/customers"): {
        "request": {
            "customer": example(
                {
                    "tenantId": "tenant_123",
                    "externalId": "member-1001",
                    "email": "john@example.com",
                    "phone": "+27821234567",
                    "firstName": "John",
                    "lastName": "Smith",
                    "clubId": "club_456",
                    "emailOptIn": True,
                    "smsOptIn": True,
                    "attributes": {"tier": "gold", "handicap": 12},
                },
                "A customer, upserted by `externalId`",
            )
        }
    },
    ("post", "/segments"): {
        "request": {
            "static": example(
                {
                    "tenantId": "tenant_123",
                    "clubId": "club_456",
                    "name": "Active Golfers",
                    "type": "STATIC",
                    "customerIds": ["customer_456", "customer_789"],
                },
                "STATIC: a list of customer ids",
            ),
            "dynamic": example(
                {
                    "tenantId": "tenant_123",
                    "name": "Gold and silver members of club_456",
                    "type": "DYNAMIC",
                    "filter": {
                        "all": [
                            {"field": "clubId", "op": "eq", "value": "club_456"},
                            {"field": "attributes.tier", "op": "in", "value": ["gold", "silver"]},
                        ]
                    },
                },
                "DYNAMIC: a filter evaluated when a campaign snapshots its audience",
            ),
        }
    },
    ("post", "/templates"): {
        "request": {
            "email": example(
                {
                    "tenantId": "tenant_123",
                    "name": "Summer tournament email",
                    "channel": "EMAIL",
                    "subject": "The summer tournament, {{ firstName }}",
                    "html": '<p>Hi {{ firstName }}, <a href="https://example.com/offer">enter now</a></p>',
                    "text": "Hi {{ firstName }}, enter now: https://example.com/offer",
                },
                "EMAIL: subject, html and text",
            ),
            "sms": example(
                {
                    "tenantId": "tenant_123",
                    "name": "Summer tournament SMS",
                    "channel": "SMS",
                    "body": "Hi {{ firstName }}, {{ attributes.tier }} members enter first.",
                },
                "SMS: a body",
            ),
        }
    },
    ("post", "/suppressions"): {
        "request": {
            "email": example(
                {
                    "tenantId": "tenant_123",
                    "channel": "EMAIL",
                    "address": "john@example.com",
                    "note": "asked by phone",
                },
                "An email address never to send to",
            )
        }
    },
    ("post", "/events"): {
        "request": {
            "event": example(
                {
                    "id": "event_0001",
                    "type": "scl.member.tier.changed",
                    "tenantId": "tenant_123",
                    "clubId": "club_456",
                    "customerId": "customer_456",
                    "occurredAt": "2025-12-14T09:00:00Z",
                    "data": {"reason": "upgrade", "tier": "gold"},
                },
                "The event that the reference TRIGGERED campaign waits for",
            )
        }
    },
}
