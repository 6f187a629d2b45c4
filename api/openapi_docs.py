"""The readable parts of the OpenAPI document: the API's description, the tags, the parameters'
notes, and the titles and examples of each operation (api.openapi_operations).

Route modules declare behaviour; what a reader of `/docs` needs besides (what the API is, what each
tag groups, request and response examples, operation titles and notes) is added here, in one place,
by `document()`, which `api.errors` calls when it builds the document. So no route file changes for
its documentation, and `tests/test_openapi_docs.py` checks that every example still validates
against the schema it illustrates.
"""

from typing import Any

from api.openapi_examples import OperationDoc
from api.openapi_operations import CONTRACT_OPERATIONS, SEED_OPERATIONS

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
        "name": "policies",
        "description": "The tenant's sending policy: quiet hours, frequency caps, auto-pause, seed list, "
        'approvals and its weight on shared rate-limited provider accounts (README "Sending policies").',
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
    {
        "name": "provider webhooks",
        "description": "Providers' own webhooks (Twilio, SendGrid, Mailgun, Postmark, Amazon SES through "
        "SNS): a tenant admin registers one per provider with its credential (sealed, never returned) "
        "and pastes the answer's `url` into the provider's console. Requests there carry no bearer "
        "token: each is verified with its provider's signature scheme (401 otherwise) and acted on "
        "once per provider event id.",
    },
    {
        "name": "webhook endpoints",
        "description": "Outbound webhooks to a tenant's own systems (admin role): campaign status "
        "changes and message events POSTed in signed batches (Standard Webhooks: `Webhook-Id`, "
        "`Webhook-Timestamp`, `Webhook-Signature`), at least once, with retries, dead letters and replay.",
    },
    {
        "name": "sender identities",
        "description": "Who a tenant's messages come from: email From, Reply-To and SMS sender, the "
        "accounts they go through, and the email domain's DKIM key (generated or uploaded, never "
        "returned; the answer carries the TXT record to publish). Writes need the admin role; an "
        "identity sends only once its domain is verified (docs/tenants-and-providers.md).",
    },
    {
        "name": "provider accounts",
        "description": "A tenant's SMTP relays and SMS providers (Twilio-compatible). Credentials are "
        "sealed and never returned; hosts must be public addresses. Writes need the admin role.",
    },
    {
        "name": "tenant settings",
        "description": "A tenant's default identity and accounts, timezone, SMS help text and sending "
        "policy (JSON merge-patch; every value has a default). Admin role only.",
    },
    {"name": "health", "description": "Liveness of the API and its database; no token needed."},
]

# Query, path and header parameters, described once for every operation that has them (in the
# reference's words where it has some); `OperationDoc.parameters` adds what only one operation means.
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
        # A route's own docstring says more about its behaviour: it stays, after the reference's words.
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
