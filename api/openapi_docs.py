"""The readable parts of the OpenAPI document: the API's description, tags, and the seed's examples.

Route modules declare behaviour; what a reader of `/docs` needs besides (what the API is, what each
tag groups, the seed's request and response examples, the seed's operation titles and notes) is
added here, in one place, by `document()`, which `api.errors` calls when it builds the document.
So no route file changes for its documentation, and `tests/test_openapi_docs.py` checks that every
example still validates against the schema it illustrates.

The examples are the seed's (`campaigns-api.seed.txt`), value for value. Where this API answers
with more fields than the seed shows (the `meta` of a list, the extra counters of a campaign), the
example is the seed's completed with those fields, so that it stays a valid answer.
"""

from typing import Any, TypedDict

API_DESCRIPTION = """\
Campaign lifecycle management, scheduling, and statistics.

Plans, schedules, sends, pauses and measures email and SMS campaigns for many tenants. Each campaign
is a Temporal workflow (`campaign-<campaignId>`): this API turns calls into workflow starts, updates
and queries, and answers reads from the Postgres read model, which follows every transition before
the call returns.

**Authentication.** Every endpoint but `/health` needs `Authorization: Bearer <JWT>` (claims `sub`,
which becomes `createdBy`, and `tenant_id` or `tenants`); the webhooks are signed instead. A
development token: `campaigns token --tenant tenant_demo`. A `tenantId` the token does not grant is
403; another tenant's object is 404, exactly like an id that does not exist.

**JSON.** camelCase; times are ISO-8601 in UTC with `Z` (input without an offset is read in the
campaign's `timezone`); ids look like `campaign_…`, `segment_…`, `template_…`, `customer_…`. Unknown
fields in a request body are refused (422), so a typo never silently does nothing.

**Errors** are `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail`; a 422
lists each bad field with its JSON path in `errors`, a 409 on a campaign names its `currentStatus`.

**Lifecycle.** `DRAFT → SCHEDULED → ACTIVE → COMPLETED`, with `ACTIVE ⇄ PAUSED` and `CANCELLED` from
SCHEDULED, ACTIVE or PAUSED. Schedule, execute, pause, resume and cancel are Temporal Updates: an
illegal transition is refused at once with 409, and when pause or cancel answer, nothing more is
sent.
"""

TRANSITIONS = """\

| From | To | Action |
|---|---|---|
| DRAFT | SCHEDULED | `POST /campaigns/:id/schedule` |
| DRAFT | ACTIVE | `POST /campaigns/:id/execute` |
| SCHEDULED | ACTIVE | automatic at `scheduledAt` (or `execute`) |
| SCHEDULED | CANCELLED | `POST /campaigns/:id/cancel` |
| ACTIVE | PAUSED | `POST /campaigns/:id/pause` |
| ACTIVE | COMPLETED | automatic when every recipient is processed |
| ACTIVE | CANCELLED | `POST /campaigns/:id/cancel` |
| PAUSED | ACTIVE | `POST /campaigns/:id/resume` |
| PAUSED | CANCELLED | `POST /campaigns/:id/cancel` |
"""

# In the order `/docs` shows them.
TAGS: list[dict[str, str]] = [
    {
        "name": "campaigns",
        "description": "Campaigns of four types (`ONE_TIME`, `RECURRING`, `TRIGGERED`, `JOURNEY`) and "
        "their lifecycle, the delivery ledger (one row per recipient and channel) and the resend of "
        "deliveries a crash left `UNKNOWN`. Lifecycle calls answer with the state actually reached; "
        "an illegal one is 409 with `currentStatus`." + TRANSITIONS,
    },
    {
        "name": "stats",
        "description": "A campaign's statistics (distinct recipients at the top, messages in "
        "`byChannel`, rates rounded to 4 places, `null` when the denominator is 0, hourly `timeline`) "
        "and its interaction log (SENT, DELIVERED, OPENED, CLICKED, CONVERTED, UNSUBSCRIBED, BOUNCED, "
        "FAILED), newest first.",
    },
    {
        "name": "customers",
        "description": "The audience: customers upserted by `externalId`, a bulk import (JSON or CSV, "
        "up to 100,000 rows, a per-row error report) and unsubscribes.",
    },
    {
        "name": "segments",
        "description": "`STATIC` segments (a list of customer ids) and `DYNAMIC` ones (a filter on "
        "customer fields and attributes, evaluated when a campaign's audience is snapshotted), with "
        "`size` and a preview of members.",
    },
    {
        "name": "templates",
        "description": "EMAIL (`subject`, `html`, `text`) and SMS (`body`) templates, personalised with "
        "Jinja in a sandbox that sees only the recipient (`{{ firstName }}`, `{{ attributes.tier }}`). "
        "Every change of content is a new `version`; a running send keeps the version it started with.",
    },
    {
        "name": "suppressions",
        "description": "The tenant's suppression list: email addresses and E.164 phone numbers that are "
        "never sent to (skipped with reason `SUPPRESSED`).",
    },
    {
        "name": "events",
        "description": "Customer events (202): each is routed to the ACTIVE `TRIGGERED` campaigns it "
        "matches and recorded as a conversion where a campaign names it; a repeated event id is "
        "accepted and ignored.",
    },
    {
        "name": "webhooks",
        "description": "Delivery events from the providers (email DELIVERED and BOUNCED, SMS DELIVERED "
        "and FAILED). No bearer token: the body must carry `X-Campaigns-Signature: sha256=<hex "
        "HMAC-SHA256 of the raw body>`.",
    },
    {"name": "health", "description": "Liveness of the API and its database; no token needed."},
]

# Query, path and header parameters, described once for every operation that has them (the seed's
# words where it has some); `OperationDoc.parameters` adds what only one operation means.
PARAMETERS: dict[str, tuple[str, Any]] = {
    "tenantId": ("Required: the tenant (the token must grant it)", "tenant_123"),
    "clubId": ("Filter by club", None),
    "skip": ("Offset", None),
    "take": ("Limit (at most 1000)", None),
    "campaign_id": ("The campaign's id", "campaign_123"),
    "customer_id": ("The customer's id", "customer_456"),
    "segment_id": ("The segment's id", "segment_456"),
    "template_id": ("The template's id", "template_email_123"),
    "suppression_id": ("The suppression list entry's id", None),
    "idempotency-key": (
        "Any string up to 200 characters: the same key and body give the same campaign (201, then "
        "200); another body under the key is 409",
        None,
    ),
}


class Example(TypedDict):
    summary: str
    value: Any


class OperationDoc(TypedDict, total=False):
    summary: str
    description: str
    parameters: dict[str, str]
    request: dict[str, Example]
    responses: dict[str, dict[str, Example]]


def _seed(value: Any, summary: str = "The seed's example") -> Example:
    return {"summary": summary, "value": value}


# ---- the seed's examples ------------------------------------------------------------------------

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

# What GET /campaigns/:id shows beyond the seed: every outcome counted, the lifecycle instants, the
# conversion and RECURRING/TRIGGERED fields.
CAMPAIGN_EXTRAS: dict[str, Any] = {
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

# The seed's "Campaign Types" snippets, each completed into a whole create request.
_COMMON_CREATE = {"tenantId": "tenant_123", "clubId": "club_456", "channels": ["EMAIL"]}
CREATE_BY_TYPE: dict[str, Example] = {
    "oneTimeScheduled": _seed(
        {
            **_COMMON_CREATE,
            "name": "Summer Tournament Promo",
            "emailTemplateId": "template_email_123",
            "type": "ONE_TIME",
            "segmentId": "segment_123",
            "scheduledAt": "2025-12-20T09:00:00Z",
        },
        "ONE_TIME, created and scheduled at once (the seed's type example)",
    ),
    "recurring": _seed(
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
        "RECURRING: weekly on Monday at 09:00 (the seed's type example)",
    ),
    "triggered": _seed(
        {
            **_COMMON_CREATE,
            "name": "Welcome to your new tier",
            "emailTemplateId": "template_email_123",
            "type": "TRIGGERED",
            "triggerEvent": "scl.member.tier.changed",
            "triggerConditions": {"reason": "upgrade"},
        },
        "TRIGGERED by an event (the seed's type example)",
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
# Beyond the seed, so that every target is accounted for (500 = 485 sent + 15 skipped); `runs` and
# `triggers` belong to RECURRING and TRIGGERED campaigns.
STATS_EXTRAS: dict[str, Any] = {
    "skippedCount": 15,
    "failedCount": 0,
    "unknownCount": 0,
    "runs": None,
    "triggers": None,
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

COMPLETED = "The seed's example, with the fields this API adds"

# Keyed by (method, OpenAPI path): the seed's endpoints, with its titles and notes.
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
                "seed": _seed(
                    {"data": [SEED_LIST_ITEM], "meta": {"total": 1, "skip": 0, "take": 25}},
                    "The seed's example, with the page's `meta`",
                )
            }
        },
    },
    ("get", "/campaigns/{campaign_id}"): {
        "summary": "Get Campaign",
        "description": "One campaign with its counts (the same as `/stats`).",
        "responses": {"200": {"seed": _seed({**SEED_CAMPAIGN, **CAMPAIGN_EXTRAS}, COMPLETED)}},
    },
    ("post", "/campaigns"): {
        "summary": "Create Campaign",
        "description": "Creates a campaign in `DRAFT`. With an `Idempotency-Key` header, the same key "
        "and body give the same campaign (201, then 200); another body under the key is 409.",
        "request": {"seed": _seed(SEED_CREATE), **CREATE_BY_TYPE},
        "responses": {
            "201": {
                "seed": _seed(
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
                    "The campaign created from the seed's request",
                )
            }
        },
    },
    ("patch", "/campaigns/{campaign_id}"): {
        "summary": "Update Campaign",
        "description": "Note: Only DRAFT campaigns can have their segment or templates changed (also "
        "channels, schedule and trigger; else 409). Name and description change in any status but "
        "COMPLETED and CANCELLED, which are read-only.",
        "request": {"seed": _seed(SEED_UPDATE)},
        "responses": {
            "200": {
                "seed": _seed(
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
                    "The DRAFT campaign after the seed's update",
                )
            }
        },
    },
    ("post", "/campaigns/{campaign_id}/schedule"): {
        "summary": "Schedule Campaign",
        "description": "From DRAFT, or SCHEDULED to move the time. `scheduledAt` must be in the "
        "future (422); without an offset it is read in the campaign's `timezone`. `targetCount` is "
        "the segment's size now; the snapshot fixes it when sending starts.",
        "request": {"seed": _seed({"scheduledAt": "2025-12-20T09:00:00Z"})},
        "responses": {
            "200": {
                "seed": _seed(
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
                "seed": _seed(
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
                "seed": _seed(
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
                "seed": _seed({"id": "campaign_123", "status": "ACTIVE", "resumedAt": "2025-12-14T11:00:00Z"})
            }
        },
    },
    ("post", "/campaigns/{campaign_id}/cancel"): {
        "summary": "Cancel Campaign",
        "description": "Cancels a scheduled, active or paused campaign; sending stops as with pause.",
        "responses": {
            "200": {
                "seed": _seed(
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
            "200": {"seed": _seed({**SEED_STATS, **STATS_EXTRAS}, COMPLETED + " (nothing unaccounted for)")}
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
        "responses": {"200": {"seed": _seed(SEED_INTERACTIONS)}},
    },
}

# Request bodies of the audience and content endpoints, as the contract lists them (§7) and the
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
            "customer": _seed(
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
            "static": _seed(
                {
                    "tenantId": "tenant_123",
                    "clubId": "club_456",
                    "name": "Active Golfers",
                    "type": "STATIC",
                    "customerIds": ["customer_456", "customer_789"],
                },
                "STATIC: a list of customer ids",
            ),
            "dynamic": _seed(
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
            "email": _seed(
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
            "sms": _seed(
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
            "email": _seed(
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
            "event": _seed(
                {
                    "id": "event_0001",
                    "type": "scl.member.tier.changed",
                    "tenantId": "tenant_123",
                    "clubId": "club_456",
                    "customerId": "customer_456",
                    "occurredAt": "2025-12-14T09:00:00Z",
                    "data": {"reason": "upgrade", "tier": "gold"},
                },
                "The event that the seed's TRIGGERED campaign waits for",
            )
        }
    },
}

JSON = "application/json"


def document(schema: dict[str, Any]) -> None:
    """Add the description, tags, parameter notes, titles and examples to a built OpenAPI document."""
    schema.setdefault("info", {})["description"] = API_DESCRIPTION
    paths: dict[str, dict[str, Any]] = schema.get("paths", {})
    used = {tag for operations in paths.values() for op in operations.values() for tag in op.get("tags", ())}
    schema["tags"] = [tag for tag in TAGS if tag["name"] in used]
    for operations in paths.values():
        for operation in operations.values():
            _describe_parameters(operation)
    for (method, path), doc in {**SEED_OPERATIONS, **CONTRACT_OPERATIONS}.items():
        operation = paths.get(path, {}).get(method)
        if operation is None:
            continue  # the route is gone; tests/test_openapi_docs.py says so
        _apply(operation, doc)


def _describe_parameters(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", ()):
        known = PARAMETERS.get(parameter.get("name", ""))
        if known is None:
            continue
        description, example = known
        parameter.setdefault("description", description)
        if example is not None:
            parameter.setdefault("example", example)


def _apply(operation: dict[str, Any], doc: OperationDoc) -> None:
    for parameter in operation.get("parameters", ()):
        description = doc.get("parameters", {}).get(parameter.get("name", ""))
        if description is not None:
            parameter["description"] = description
    if "summary" in doc:
        operation["summary"] = doc["summary"]
    if "description" in doc:
        # A route's own docstring says more about its behaviour: it stays, after the seed's words.
        own = operation.get("description")
        operation["description"] = doc["description"] + (f"\n\n{own}" if own else "")
    if "request" in doc:
        media = operation.get("requestBody", {}).get("content", {}).get(JSON)
        if media is not None:
            media["examples"] = dict(doc["request"])
    for status, examples in doc.get("responses", {}).items():
        media = operation.get("responses", {}).get(status, {}).get("content", {}).get(JSON)
        if media is not None:
            media["examples"] = dict(examples)
