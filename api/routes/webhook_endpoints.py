"""Outbound webhook endpoints: where a tenant's own systems hear what happened (docs/outbound-webhooks.md).

Every route needs the `admin` role for the endpoint's tenant; another tenant's endpoint is a 404.
The signing secret is shown once, in the answer to a create or a rotation.
"""

from typing import Annotated

from fastapi import APIRouter, Path, Response

from api import webhook_endpoints as service
from api.deps import ConnDep, PrincipalDep, StateDep
from api.schemas.common import PageWindow, TenantIdQuery, paginate
from api.schemas.webhook_endpoints import (
    ReplayQueued,
    ReplayRequest,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointPublic,
    WebhookEndpointsPublic,
    WebhookEndpointStats,
    WebhookEndpointUpdate,
    WebhookSecretRotated,
)
from db import webhook_endpoints as endpoints

router = APIRouter(prefix="/webhook-endpoints", tags=["webhook endpoints"])

EndpointId = Annotated[str, Path(max_length=40)]


@router.post("", status_code=201, response_model=WebhookEndpointCreated, response_model_by_alias=True)
async def create_endpoint(
    body: WebhookEndpointCreate, principal: PrincipalDep, state: StateDep
) -> WebhookEndpointCreated:
    """Register a receiver; its delivery starts at once. The answer carries the secret, once."""
    return await service.create_endpoint(state, principal, body)


@router.get("", response_model=WebhookEndpointsPublic, response_model_by_alias=True)
async def list_endpoints(
    principal: PrincipalDep, conn: ConnDep, tenant_id: TenantIdQuery, window: PageWindow
) -> WebhookEndpointsPublic:
    """Newest first."""
    principal.require(tenant_id)
    principal.require_admin(tenant_id)
    rows = await endpoints.page_endpoints(conn, tenant_id, window)
    return paginate(WebhookEndpointsPublic, rows, window)


@router.get("/{endpoint_id}", response_model=WebhookEndpointPublic, response_model_by_alias=True)
async def get_endpoint(
    endpoint_id: EndpointId, principal: PrincipalDep, state: StateDep
) -> WebhookEndpointPublic:
    row = await service.owned_for_admin(state, principal, endpoint_id)
    return WebhookEndpointPublic.model_validate(row, from_attributes=True)


@router.patch("/{endpoint_id}", response_model=WebhookEndpointPublic, response_model_by_alias=True)
async def update_endpoint(
    endpoint_id: EndpointId, body: WebhookEndpointUpdate, principal: PrincipalDep, state: StateDep
) -> WebhookEndpointPublic:
    """Change the URL, the event types, the description, or pause delivery (`enabled: false`)."""
    return await service.update_endpoint(state, principal, endpoint_id, body)


@router.delete("/{endpoint_id}", status_code=204, response_class=Response)
async def delete_endpoint(endpoint_id: EndpointId, principal: PrincipalDep, state: StateDep) -> Response:
    """Stop delivering and forget the endpoint and its dead letters."""
    await service.delete_endpoint(state, principal, endpoint_id)
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/rotate-secret", response_model=WebhookSecretRotated, response_model_by_alias=True
)
async def rotate_secret(
    endpoint_id: EndpointId, principal: PrincipalDep, state: StateDep
) -> WebhookSecretRotated:
    """A new secret, shown once; the old one keeps signing alongside it for 24 hours."""
    return await service.rotate_secret(state, principal, endpoint_id)


@router.post(
    "/{endpoint_id}/replay", status_code=202, response_model=ReplayQueued, response_model_by_alias=True
)
async def replay(
    endpoint_id: EndpointId, body: ReplayRequest, principal: PrincipalDep, state: StateDep
) -> ReplayQueued:
    """Send dead letters again, by event id or by when the events happened."""
    return await service.replay(state, principal, endpoint_id, body)


@router.get("/{endpoint_id}/stats", response_model=WebhookEndpointStats, response_model_by_alias=True)
async def endpoint_stats(
    endpoint_id: EndpointId, principal: PrincipalDep, state: StateDep
) -> WebhookEndpointStats:
    """Delivered, failed, pending and dead-lettered events, and the last success and error."""
    return await service.stats(state, principal, endpoint_id)
