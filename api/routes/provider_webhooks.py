"""Provider webhooks in the providers' own formats (README "Provider webhooks").

A tenant admin registers one webhook per provider account (`/provider-webhooks`) with the
credential that provider verifies with; the answer gives the URL to paste into the provider's
console, `{public_url}/webhooks/providers/{provider}/{id}`. The credential is sealed at rest and
never returned. The provider then posts there in its own format: a request that fails its
provider's check is a 401 and records nothing; a verified one is acted on once per provider event
id (api.provider_ledger) and answered 200 (Twilio inbound SMS: TwiML).
"""

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from api.deps import ConnDep, Kind, PrincipalDep, SettingsDep, StateDep, get_owned
from api.errors import Problem
from api.provider_ledger import apply_events, apply_inbound
from api.provider_webhooks import Incoming, sns_fetcher, verified
from api.schemas.common import PageWindow, TenantIdQuery, paginate
from api.schemas.provider_webhooks import (
    ProviderWebhookCreate,
    ProviderWebhookPublic,
    ProviderWebhookResult,
    ProviderWebhooksPublic,
)
from core.secrets import SealedValueError, seal
from core.settings import Settings
from db import provider_webhooks as hooks
from db.pages import Slice
from providers.webhooks import PROVIDERS, Malformed, Unverified
from providers.webhooks.ses import Fetcher

router = APIRouter(tags=["provider webhooks"])

PROVIDER_WEBHOOK = Kind("provider webhook", hooks.owned_provider_webhook)


def _public(row: hooks.ProviderWebhookRow, settings: Settings) -> ProviderWebhookPublic:
    url = f"{settings.public_url.rstrip('/')}/webhooks/providers/{row.provider}/{row.id}"
    return ProviderWebhookPublic(
        id=row.id,
        tenant_id=row.tenant_id,
        provider=row.provider,
        url=url,
        created_by=row.created_by,
        created_at=row.created_at,
    )


@router.post(
    "/provider-webhooks", status_code=201, response_model=ProviderWebhookPublic, response_model_by_alias=True
)
async def register_provider_webhook(
    body: ProviderWebhookCreate, principal: PrincipalDep, conn: ConnDep, settings: SettingsDep
) -> ProviderWebhookPublic:
    """Register an inbound webhook; the answer's `url` goes into the provider's console."""
    principal.require(body.tenant_id)  # another tenant named in the body: 403, as everywhere
    principal.require_admin(body.tenant_id)
    row = await hooks.create_provider_webhook(
        conn,
        tenant_id=body.tenant_id,
        provider=body.provider,
        sealed=seal(json.dumps(body.credentials())),
        created_by=principal.subject,
    )
    return _public(row, settings)


@router.get("/provider-webhooks", response_model=ProviderWebhooksPublic, response_model_by_alias=True)
async def list_provider_webhooks(
    principal: PrincipalDep,
    conn: ConnDep,
    settings: SettingsDep,
    tenant_id: TenantIdQuery,
    window: PageWindow,
) -> ProviderWebhooksPublic:
    principal.require(tenant_id)
    principal.require_admin(tenant_id)
    page = await hooks.page_provider_webhooks(conn, tenant_id, window)
    public = Slice(page.total, [_public(r, settings) for r in page.rows])
    return paginate(ProviderWebhooksPublic, public, window)


async def _owned(webhook_id: str, principal: PrincipalDep, conn: ConnDep) -> hooks.ProviderWebhookRow:
    row = await get_owned(PROVIDER_WEBHOOK, webhook_id, principal.tenants, conn)
    principal.require_admin(row.tenant_id)
    return row


OwnedHook = Annotated[hooks.ProviderWebhookRow, Depends(_owned)]


@router.get(
    "/provider-webhooks/{webhook_id}", response_model=ProviderWebhookPublic, response_model_by_alias=True
)
async def get_provider_webhook(row: OwnedHook, settings: SettingsDep) -> ProviderWebhookPublic:
    return _public(row, settings)


@router.delete("/provider-webhooks/{webhook_id}", status_code=204)
async def delete_provider_webhook(row: OwnedHook, conn: ConnDep) -> Response:
    """The URL stops working at once: the provider's later requests are 401."""
    await hooks.delete_provider_webhook(conn, row.id)
    return Response(status_code=204)


@router.post(
    "/webhooks/providers/{provider}/{webhook_id}",
    response_model=ProviderWebhookResult,
    response_model_by_alias=True,
    responses={401: {"description": "No registration at this URL, or the provider's check failed"}},
)
async def receive_provider_webhook(
    provider: Annotated[str, Path(max_length=20)],
    webhook_id: str,
    request: Request,
    state: StateDep,
    fetch: Annotated[Fetcher, Depends(sns_fetcher)],
) -> ProviderWebhookResult | Response:
    """A provider's request in its own format, verified with the registration's credential."""
    # An unknown (or deleted) registration is a 401 like a bad signature: nothing here is provably
    # from a provider we listen to, and the answer does not say which ids exist.
    hook = None
    if provider in PROVIDERS and "\x00" not in webhook_id:
        async with state.engine.connect() as conn:
            hook = await hooks.provider_webhook_for(conn, provider, webhook_id)
    if hook is None:
        raise Problem(401, "no provider webhook is registered at this URL")
    query = f"?{request.url.query}" if request.url.query else ""
    incoming = Incoming(
        body=await request.body(),
        headers=request.headers,
        url=f"{state.settings.public_url.rstrip('/')}{request.url.path}{query}",
        query=request.query_params,
    )
    try:
        found = await verified(hook, incoming, fetch)
    except (Unverified, SealedValueError) as err:
        raise Problem(
            401, str(err) if isinstance(err, Unverified) else "the webhook's credential is unusable"
        ) from None
    except Malformed as err:
        raise Problem(400, str(err)) from None
    async with state.engine.begin() as conn:
        if found.inbound is not None:
            twiml = await apply_inbound(conn, hook, found.inbound)
            return Response(twiml, media_type="text/xml")
        return await apply_events(conn, hook, found.events, found.skipped)
