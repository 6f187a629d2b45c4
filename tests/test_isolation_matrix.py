"""Tenant isolation matrix (issue 8, README "Security"): every endpoint by every kind of caller.

Endpoints are discovered from the app itself (every APIRoute, also those hidden from OpenAPI), so a
route added later is covered automatically: the test fails until it has a row in ENDPOINTS (how to
call it as a tenant) or PUBLIC (why it needs no bearer token).

Callers: the owner (2xx, or the one documented non-2xx), another tenant (404 for an object named in
the path, 403 for a tenantId in the query or body), and five broken credentials (no token, expired,
wrong signature, no tenant claim, `alg: none`), each a 401. No response body or header ever holds
an id, name or email of the other tenant, and only the owner's calls change any data.
"""

import base64
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import issue_token
from api.errors import api_routes
from api.main import create_app
from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign


@dataclass
class World:
    """One tenant's objects, each name and email marked so a leak is easy to spot."""

    tenant: str
    marker: str
    customer: str = ""
    segment: str = ""
    email_template: str = ""
    campaign: str = ""  # a DRAFT the read and edit calls use
    doomed: str = ""  # a DRAFT that DELETE removes
    to_schedule: str = ""
    to_execute: str = ""
    scheduled: str = ""  # SCHEDULED: cancel's own case
    cancelled: str = ""  # CANCELLED: resend-unknown's own case
    suppression: str = ""  # an entry the read calls use
    doomed_suppression: str = ""  # an entry DELETE by id removes
    doomed_address: str = ""  # an address DELETE by address removes
    webhook_endpoint: str = ""  # an outbound webhook endpoint (disabled: it never calls out)
    sender_identity: str = ""  # an SMS-only sender identity (made by the tenant's admin)
    provider_account: str = ""  # an SMTP provider account (made by the tenant's admin)
    provider_webhook: str = ""  # an inbound Mailgun webhook registration (made by the tenant's admin)
    secrets: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Call:
    path: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] | None = None
    json: Any = None


@dataclass(frozen=True)
class Endpoint:
    """How the owner calls the endpoint, and the statuses the owner gets."""

    call: Callable[[World], Call]
    own: frozenset[int]


def ep(call: Callable[[World], Call], *own: int) -> Endpoint:
    return Endpoint(call, frozenset(own))


def campaign_body(w: World) -> dict[str, Any]:
    return {"tenantId": w.tenant, "name": f"{w.marker} new", "channels": ["EMAIL"]}


def customer_body(w: World) -> dict[str, Any]:
    return {"tenantId": w.tenant, "externalId": f"{w.marker}-x", "email": f"{w.marker}.x@example.com"}


def event_body(w: World) -> dict[str, Any]:
    return {
        "id": f"evt-{uuid.uuid4().hex}",
        "type": "purchase",
        "tenantId": w.tenant,
        "customerId": w.customer,
        "occurredAt": "2026-01-01T00:00:00Z",
    }


def webhook_endpoint_body(tenant: str) -> dict[str, Any]:
    """A disabled endpoint: it never calls out."""
    url = "https://93.184.215.14/h"
    return {"tenantId": tenant, "url": url, "eventTypes": ["message.sent"], "enabled": False}


def webhook_endpoint_call(body: dict[str, Any] | None = None) -> Callable[[World], Call]:
    return lambda w: Call({"endpoint_id": w.webhook_endpoint}, json=body)


FAR = "2099-01-01T00:00:00Z"


# (METHOD, path template) → how to call it. Lifecycle calls that need a particular state get a
# campaign in that state; pause/resume on a DRAFT are the workflow's 409 (the call reached it).
def provider_webhook_call(w: World) -> Call:
    return Call({"webhook_id": w.provider_webhook})


ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("POST", "/campaigns"): ep(lambda w: Call(json=campaign_body(w)), 201),
    ("GET", "/campaigns"): ep(lambda w: Call(params={"tenantId": w.tenant}), 200),
    ("GET", "/campaigns/{campaign_id}"): ep(lambda w: Call({"campaign_id": w.campaign}), 200),
    ("PATCH", "/campaigns/{campaign_id}"): ep(
        lambda w: Call({"campaign_id": w.campaign}, json={"name": f"{w.marker} renamed"}), 200
    ),
    ("DELETE", "/campaigns/{campaign_id}"): ep(lambda w: Call({"campaign_id": w.doomed}), 204),
    ("POST", "/campaigns/{campaign_id}/schedule"): ep(
        lambda w: Call({"campaign_id": w.to_schedule}, json={"scheduledAt": FAR}), 200
    ),
    ("POST", "/campaigns/{campaign_id}/execute"): ep(lambda w: Call({"campaign_id": w.to_execute}), 200),
    ("POST", "/campaigns/{campaign_id}/pause"): ep(lambda w: Call({"campaign_id": w.campaign}), 409),
    ("POST", "/campaigns/{campaign_id}/resume"): ep(lambda w: Call({"campaign_id": w.campaign}), 409),
    ("POST", "/campaigns/{campaign_id}/cancel"): ep(lambda w: Call({"campaign_id": w.scheduled}), 200),
    ("GET", "/campaigns/{campaign_id}/recipients"): ep(lambda w: Call({"campaign_id": w.campaign}), 200),
    ("GET", "/campaigns/{campaign_id}/stats"): ep(lambda w: Call({"campaign_id": w.campaign}), 200),
    ("GET", "/campaigns/{campaign_id}/interactions"): ep(lambda w: Call({"campaign_id": w.campaign}), 200),
    ("POST", "/campaigns/{campaign_id}/resend-unknown"): ep(
        lambda w: Call({"campaign_id": w.cancelled}), 200
    ),
    # A follow-up needs a COMPLETED source (409 for this DRAFT); a campaign that is no follow-up has
    # no follow-up record (404, the same answer another tenant gets).
    ("POST", "/campaigns/{campaign_id}/follow-up"): ep(
        lambda w: Call(
            {"campaign_id": w.campaign}, json={"audience": "NOT_OPENED", "name": f"{w.marker} again"}
        ),
        409,
    ),
    ("GET", "/campaigns/{campaign_id}/follow-up"): ep(lambda w: Call({"campaign_id": w.campaign}), 404),
    ("POST", "/customers"): ep(lambda w: Call(json=customer_body(w)), 201),
    ("POST", "/customers/import"): ep(
        lambda w: Call(json={"tenantId": w.tenant, "customers": [{"externalId": f"{w.marker}-imp"}]}), 200
    ),
    ("GET", "/customers"): ep(lambda w: Call(params={"tenantId": w.tenant}), 200),
    ("GET", "/customers/{customer_id}"): ep(lambda w: Call({"customer_id": w.customer}), 200),
    ("POST", "/segments"): ep(
        lambda w: Call(
            json={"tenantId": w.tenant, "name": f"{w.marker} seg", "type": "STATIC", "customerIds": []}
        ),
        201,
    ),
    ("GET", "/segments"): ep(lambda w: Call(params={"tenantId": w.tenant}), 200),
    ("GET", "/segments/{segment_id}"): ep(lambda w: Call({"segment_id": w.segment}), 200),
    ("POST", "/segments/{segment_id}/members"): ep(
        lambda w: Call({"segment_id": w.segment}, json={"customerIds": [w.customer]}), 200
    ),
    ("POST", "/templates"): ep(
        lambda w: Call(
            json={"tenantId": w.tenant, "name": f"{w.marker} tpl", "channel": "SMS", "body": "Hi"}
        ),
        201,
    ),
    ("GET", "/templates"): ep(lambda w: Call(params={"tenantId": w.tenant}), 200),
    ("GET", "/templates/{template_id}"): ep(lambda w: Call({"template_id": w.email_template}), 200),
    ("POST", "/templates/{template_id}/preview"): ep(
        lambda w: Call({"template_id": w.email_template}, json={"customerId": w.customer}), 200
    ),
    ("PATCH", "/templates/{template_id}"): ep(
        lambda w: Call({"template_id": w.email_template}, json={"name": f"{w.marker} renamed"}), 200
    ),
    ("GET", "/segments/{segment_id}/preview"): ep(lambda w: Call({"segment_id": w.segment}), 200),
    ("POST", "/customers/{customer_id}/unsubscribe"): ep(
        lambda w: Call({"customer_id": w.customer}, json={"channel": "SMS"}), 200
    ),
    ("POST", "/suppressions"): ep(
        lambda w: Call(
            json={"tenantId": w.tenant, "channel": "EMAIL", "address": f"{w.marker}.new@example.com"}
        ),
        201,
    ),
    ("GET", "/suppressions"): ep(lambda w: Call(params={"tenantId": w.tenant}), 200),
    ("GET", "/suppressions/{suppression_id}"): ep(lambda w: Call({"suppression_id": w.suppression}), 200),
    ("DELETE", "/suppressions/{suppression_id}"): ep(
        lambda w: Call({"suppression_id": w.doomed_suppression}), 204
    ),
    ("DELETE", "/suppressions"): ep(
        lambda w: Call(params={"tenantId": w.tenant, "channel": "EMAIL", "address": w.doomed_address}), 204
    ),
    ("GET", "/campaigns/{campaign_id}/estimate"): ep(lambda w: Call({"campaign_id": w.campaign}), 200),
    ("GET", "/campaigns/{campaign_id}/experiment"): ep(lambda w: Call({"campaign_id": w.campaign}), 200),
    ("POST", "/campaigns/{campaign_id}/winner"): ep(
        lambda w: Call({"campaign_id": w.campaign}, json={"variant": "A"}), 409
    ),
    # The caller created the campaign: a creator's own approval is refused.
    ("POST", "/campaigns/{campaign_id}/approve"): ep(lambda w: Call({"campaign_id": w.campaign}), 403),
    ("POST", "/campaigns/{campaign_id}/test-send"): ep(
        lambda w: Call({"campaign_id": w.campaign}, json={"emails": [f"{w.marker}.test@example.com"]}), 200
    ),
    ("GET", "/tenants/{tenantId}/policy"): ep(lambda w: Call({"tenantId": w.tenant}), 200),
    ("PUT", "/tenants/{tenantId}/policy"): ep(
        lambda w: Call({"tenantId": w.tenant}, json={"quietMode": "SKIP"}), 200
    ),
    ("POST", "/events"): ep(lambda w: Call(json=event_body(w)), 202),
    # Outbound webhook endpoints need the tenant's `admin` role, which the owner's token lacks: 403
    # (tests/test_outbound_webhooks.py covers the admin's own calls).
    ("POST", "/webhook-endpoints"): ep(lambda w: Call(json=webhook_endpoint_body(w.tenant)), 403),
    ("GET", "/webhook-endpoints"): ep(lambda w: Call(params={"tenantId": w.tenant}), 403),
    ("GET", "/webhook-endpoints/{endpoint_id}"): ep(webhook_endpoint_call(), 403),
    ("PATCH", "/webhook-endpoints/{endpoint_id}"): ep(webhook_endpoint_call({"enabled": False}), 403),
    ("DELETE", "/webhook-endpoints/{endpoint_id}"): ep(webhook_endpoint_call(), 403),
    ("GET", "/webhook-endpoints/{endpoint_id}/stats"): ep(webhook_endpoint_call(), 403),
    ("POST", "/webhook-endpoints/{endpoint_id}/rotate-secret"): ep(webhook_endpoint_call(), 403),
    ("POST", "/webhook-endpoints/{endpoint_id}/replay"): ep(webhook_endpoint_call({"eventIds": ["1"]}), 403),
    # The tenant workspace: anyone of the tenant reads identities and accounts; writes, and the
    # settings, need the `admin` role the owner's token lacks (tests/test_tenant_workspace.py).
    ("POST", "/sender-identities"): ep(
        lambda w: Call(json={"tenantId": w.tenant, "name": "x", "smsSender": "X"}), 403
    ),
    ("GET", "/sender-identities"): ep(lambda w: Call(params={"tenantId": w.tenant}), 200),
    ("GET", "/sender-identities/{identityId}"): ep(lambda w: Call({"identityId": w.sender_identity}), 200),
    ("PATCH", "/sender-identities/{identityId}"): ep(
        lambda w: Call({"identityId": w.sender_identity}, json={"name": f"{w.marker} renamed"}), 403
    ),
    ("DELETE", "/sender-identities/{identityId}"): ep(lambda w: Call({"identityId": w.sender_identity}), 403),
    ("POST", "/sender-identities/{identityId}/verify"): ep(
        lambda w: Call({"identityId": w.sender_identity}), 403
    ),
    ("POST", "/provider-accounts"): ep(
        lambda w: Call(
            json={"tenantId": w.tenant, "name": "x", "kind": "SMTP", "smtp": {"host": "127.0.0.1"}}
        ),
        403,
    ),
    ("GET", "/provider-accounts"): ep(lambda w: Call(params={"tenantId": w.tenant}), 200),
    ("GET", "/provider-accounts/{accountId}"): ep(lambda w: Call({"accountId": w.provider_account}), 200),
    ("PATCH", "/provider-accounts/{accountId}"): ep(
        lambda w: Call({"accountId": w.provider_account}, json={"name": f"{w.marker} renamed"}), 403
    ),
    ("DELETE", "/provider-accounts/{accountId}"): ep(lambda w: Call({"accountId": w.provider_account}), 403),
    ("GET", "/tenants/{tenantId}/settings"): ep(lambda w: Call({"tenantId": w.tenant}), 403),
    ("PATCH", "/tenants/{tenantId}/settings"): ep(
        lambda w: Call({"tenantId": w.tenant}, json={"timezone": "UTC"}), 403
    ),
    # Inbound provider webhook registrations: the admin's alone (tests/test_provider_webhooks_*.py).
    ("POST", "/provider-webhooks"): ep(
        lambda w: Call(json={"tenantId": w.tenant, "provider": "mailgun", "secret": "k" * 32}), 403
    ),
    ("GET", "/provider-webhooks"): ep(lambda w: Call(params={"tenantId": w.tenant}), 403),
    ("GET", "/provider-webhooks/{webhook_id}"): ep(provider_webhook_call, 403),
    ("DELETE", "/provider-webhooks/{webhook_id}"): ep(provider_webhook_call, 403),
    ("POST", "/events/batch"): ep(lambda w: Call(json={"events": [event_body(w), event_body(w)]}), 202),
}

# Routes without a bearer token, and what authenticates them instead. Their answer must not depend
# on whatever Authorization header is sent.
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/health"): "liveness probe: no data",
    ("GET", "/health/live"): "liveness probe: no database, no data",
    ("GET", "/metrics"): "Prometheus scrape (no token: README, Security), meant for the operator's network",
    ("GET", "/t/o/{token}"): "open pixel: the signed tracking token is the credential",
    ("GET", "/t/c/{token}"): "click redirect: the signed tracking token is the credential",
    ("GET", "/t/u/{token}"): "unsubscribe page: the signed tracking token is the credential",
    ("POST", "/t/u/{token}"): "one-click unsubscribe: the signed tracking token is the credential",
    ("POST", "/webhooks/email"): "provider webhook: HMAC signature of the body",
    ("POST", "/webhooks/sms"): "provider webhook: HMAC signature of the body",
    ("POST", "/webhooks/providers/{provider}/{webhook_id}"): (
        "a provider's own webhook: its signature scheme, checked with the registration's credential"
    ),
}


def discovered_routes(stack: Stack) -> set[tuple[str, str]]:
    app = create_app(stack.settings)
    found = {(m, r.path) for r in api_routes(app) for m in (r.methods or ()) if m != "HEAD"}
    documented = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
    assert documented <= found
    return found


# ---- callers ----------------------------------------------------------------------------------------


def token(stack: Stack, claims: dict[str, Any], secret: str | None = None) -> dict[str, str]:
    now = datetime.now(UTC)
    payload = {"iat": now, "exp": now + timedelta(hours=1), **claims}
    encoded = jwt.encode(payload, secret or stack.settings.jwt_secret, algorithm="HS256")
    return {"Authorization": f"Bearer {encoded}"}


def unsigned(claims: dict[str, Any]) -> dict[str, str]:
    """An `alg: none` token: a verifier that trusted the header would accept it."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    exp = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
    return {"Authorization": f"Bearer {part({'alg': 'none', 'typ': 'JWT'})}.{part({**claims, 'exp': exp})}."}


def broken_credentials(stack: Stack) -> dict[str, dict[str, str]]:
    mine = {"sub": "user_a", "tenant_id": stack.tenant}
    past = datetime.now(UTC) - timedelta(hours=2)
    return {
        "no token": {},
        "not a bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
        "expired": token(stack, {**mine, "iat": past, "exp": past + timedelta(hours=1)}),
        "wrong signature": token(stack, mine, secret="another-secret-another-secret-0123456789"),
        "no tenant claim": token(stack, {"sub": "user_a"}),
        "empty tenant list": token(stack, {"sub": "user_a", "tenants": []}),
        "alg none": unsigned(mine),
    }


# ---- the two tenants' data ------------------------------------------------------------------------


async def populate(stack: Stack, tenant: str) -> World:
    marker = f"secret{uuid.uuid4().hex[:10]}"
    w = World(tenant=tenant, marker=marker)
    as_owner = Stack(**{**stack.__dict__, "tenant": tenant})
    audience = await make_audience(stack.engine, tenant, 2, prefix=f"{marker}-")
    email_t, sms_t = await make_templates(stack.engine, tenant)
    w.customer, w.segment, w.email_template = audience.customers[0]["id"], audience.segment_id, email_t
    ids = [await create_campaign(as_owner, audience, email_t, sms_t, name=f"{marker} c") for _ in range(6)]
    w.campaign, w.doomed, w.to_schedule, w.to_execute, w.scheduled, w.cancelled = ids
    for campaign in (w.scheduled, w.cancelled):
        r = await as_owner.call("POST", f"/campaigns/{campaign}/schedule", json={"scheduledAt": FAR})
        assert r.status_code == 200, r.text
    r = await as_owner.call("POST", f"/campaigns/{w.cancelled}/cancel")
    assert r.status_code == 200, r.text
    suppressions = []
    for name in ("kept", "doomed", "by-address"):
        body = {"tenantId": tenant, "channel": "EMAIL", "address": f"{marker}.{name}@example.com"}
        r = await as_owner.call("POST", "/suppressions", json=body)
        assert r.status_code == 201, r.text
        suppressions.append(r.json()["id"])
    w.suppression, w.doomed_suppression = suppressions[:2]
    w.doomed_address = f"{marker}.by-address@example.com"
    admin = {"Authorization": f"Bearer {issue_token(stack.settings, 'admin_a', [tenant], roles=['admin'])}"}
    r = await stack.api.post("/webhook-endpoints", json=webhook_endpoint_body(tenant), headers=admin)
    assert r.status_code == 201, r.text
    w.webhook_endpoint = r.json()["id"]
    identity = {"tenantId": tenant, "name": f"{marker} sender", "smsSender": "Club"}
    r = await stack.api.post("/sender-identities", json=identity, headers=admin)
    assert r.status_code == 201, r.text
    w.sender_identity = r.json()["id"]
    account = {"tenantId": tenant, "name": f"{marker} relay", "kind": "SMTP", "smtp": {"host": "127.0.0.1"}}
    r = await stack.api.post("/provider-accounts", json=account, headers=admin)
    assert r.status_code == 201, r.text
    w.provider_account = r.json()["id"]
    hook = {"tenantId": tenant, "provider": "mailgun", "secret": f"{marker}-signing-key"}
    r = await stack.api.post("/provider-webhooks", json=hook, headers=admin)
    assert r.status_code == 201, r.text
    w.provider_webhook = r.json()["id"]
    w.secrets = {marker, tenant, audience.segment_id, email_t, sms_t, *ids, *suppressions, w.webhook_endpoint}
    w.secrets |= {w.sender_identity, w.provider_account, w.provider_webhook}
    for c in audience.customers:
        w.secrets |= {c["id"], c["email"], c["phone"], c["external_id"]}
    return w


async def snapshot(engine: AsyncEngine, tenants: set[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of these tenants, in every table of the database that has a tenant_id (read from
    the catalog, so a table a migration adds is covered without being listed here)."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    async with engine.connect() as conn:
        names = await conn.execute(
            text(
                "SELECT table_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND column_name = 'tenant_id' ORDER BY table_name"
            )
        )
        for (name,) in names.all():
            result = await conn.execute(
                text(f'SELECT * FROM "{name}" WHERE tenant_id = ANY(:t)'), {"t": sorted(tenants)}
            )
            rows[name] = sorted((tuple(str(v) for v in r) for r in result), key=repr)
    return rows


# ---- the matrix --------------------------------------------------------------------------------------


def fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"{(\w+)}", lambda m: values[m.group(1)], template)


async def send(
    stack: Stack, method: str, template: str, call: Call, headers: dict[str, str]
) -> httpx.Response:
    return await stack.api.request(
        method, fill(template, call.path), params=call.params, json=call.json, headers=headers
    )


def assert_no_leak(r: httpx.Response, secrets: set[str], where: str) -> None:
    seen = r.text + " ".join(f"{k}: {v}" for k, v in r.headers.items())
    leaked = sorted(s for s in secrets if s in seen)
    assert not leaked, f"{where}: leaked {leaked}: {r.text[:500]}"


def assert_problem(r: httpx.Response, status: int, where: str) -> None:
    assert r.status_code == status, f"{where}: expected {status}, got {r.status_code}: {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/problem+json"), where


async def test_every_route_has_a_row(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    routes = discovered_routes(stack)
    missing = routes - set(ENDPOINTS) - set(PUBLIC)
    assert not missing, f"add these routes to ENDPOINTS or PUBLIC: {sorted(missing)}"
    assert not set(ENDPOINTS) & set(PUBLIC)
    assert set(ENDPOINTS) <= routes  # the endpoints the contract names all exist


async def test_isolation_matrix(make_stack: StackFactory) -> None:
    stack = await make_stack()
    a = await populate(stack, stack.tenant)
    b = await populate(stack, stack.other_tenant)
    routes = sorted(discovered_routes(stack) & set(ENDPOINTS))
    assert len(routes) == len(ENDPOINTS)
    before = await snapshot(stack.engine, {a.tenant, b.tenant})
    before_b = await snapshot(stack.engine, {b.tenant})

    for method, template in routes:
        endpoint = ENDPOINTS[(method, template)]
        where = f"{method} {template}"
        # A caller of tenant A names tenant B's objects (or tenant B itself).
        foreign = endpoint.call(b)
        r = await send(stack, method, template, foreign, stack.headers(a.tenant))
        if foreign.path:
            assert_problem(r, 404, f"{where} [other tenant]")
            # Exactly as if it did not exist: the same answer for an id that no tenant has.
            unknown = Call({k: f"{v[: v.index('_')]}_doesnotexist" for k, v in foreign.path.items()})
            unknown = Call(unknown.path, foreign.params, foreign.json)
            r2 = await send(stack, method, template, unknown, stack.headers(a.tenant))
            assert (r2.status_code, r2.json()) == (r.status_code, r.json()), where
        else:
            assert_problem(r, 403, f"{where} [other tenant]")
        assert_no_leak(r, b.secrets, f"{where} [other tenant]")
        # Broken credentials on the owner's own objects: 401, and nothing of either tenant.
        for name, headers in broken_credentials(stack).items():
            r = await send(stack, method, template, endpoint.call(a), headers)
            assert_problem(r, 401, f"{where} [{name}]")
            assert r.headers.get("www-authenticate") == "Bearer", where
            assert_no_leak(r, a.secrets | b.secrets, f"{where} [{name}]")

    # Nothing the calls above tried changed a row of either tenant.
    assert await snapshot(stack.engine, {a.tenant, b.tenant}) == before

    # The owner: the documented answer, and still nothing of the other tenant.
    for method, template in routes:
        endpoint = ENDPOINTS[(method, template)]
        where = f"{method} {template} [owner]"
        r = await send(stack, method, template, endpoint.call(a), stack.headers(a.tenant))
        assert r.status_code in endpoint.own, f"{where}: {r.status_code} {r.text[:500]}"
        assert_no_leak(r, b.secrets, where)
    # Tenant B's data is exactly as it was after all of A's calls.
    assert await snapshot(stack.engine, {b.tenant}) == before_b


@pytest.mark.parametrize("route", sorted(PUBLIC))
async def test_public_routes_ignore_bearer_tokens(make_stack: StackFactory, route: tuple[str, str]) -> None:
    stack = await make_stack(worker=False)
    method, template = route
    path = fill(template, {"token": "not-a-signed-token", "provider": "mailgun", "webhook_id": "pwebhook_x"})
    body = {"events": [{"id": "e1", "type": "DELIVERED", "deliveryId": "delivery_x"}]}
    kwargs: dict[str, Any] = {"json": body} if template.startswith("/webhooks/") else {}
    statuses = set()
    for headers in [stack.headers(), stack.headers(stack.other_tenant), *broken_credentials(stack).values()]:
        r = await stack.api.request(method, path, headers=headers, **kwargs)
        assert r.status_code < 500, r.text
        statuses.add(r.status_code)
    assert len(statuses) == 1, statuses
    if template.startswith("/webhooks/"):
        assert statuses == {401}  # a bearer token is no substitute for the body's signature
