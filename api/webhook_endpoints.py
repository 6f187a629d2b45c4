"""What the `/webhook-endpoints` routes do: check a URL against SSRF, keep secrets sealed, and keep
one delivery workflow per endpoint running (docs/outbound-webhooks.md).

Writes run in their own transaction, committed BEFORE the endpoint's workflow is started or woken:
a workflow that looked before the commit would find no endpoint and end. The workflow is started
with signal-with-start (signal `wake`), so the same call starts a workflow that is not running
(for instance one whose start failed earlier) and wakes the one that is.
"""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from temporalio.client import Client
from temporalio.service import RPCError

from api.auth import Principal
from api.deps import AppState
from api.errors import Problem, invalid, not_found
from api.schemas.webhook_endpoints import (
    ReplayQueued,
    ReplayRequest,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointPublic,
    WebhookEndpointStats,
    WebhookEndpointUpdate,
    WebhookSecretRotated,
    unique_types,
)
from core.ids import new_id
from core.secrets import seal
from core.settings import Settings
from core.ssrf import UnsafeTargetError, check_host, url_host
from core.webhook_signing import new_secret
from db import webhook_endpoints as endpoints
from db import webhook_outbox as outbox
from db.webhook_endpoints import EndpointChanges, EndpointRow, NewEndpoint
from workflows.webhook_delivery import WEBHOOK_WORKFLOW, WebhookEndpointInput, webhook_workflow_id

log = logging.getLogger("campaigns.api.webhooks")

MAX_ENDPOINTS_PER_TENANT = 20
# After a rotation the old secret still signs (next to the new one) this long.
ROTATION_OVERLAP = timedelta(hours=24)


async def checked_url(url: str, settings: Settings) -> str:
    """The URL if the service may call it (shape and every address of its host), else a 422."""
    try:
        host = url_host(url, settings.webhook_allow_http)
        await asyncio.to_thread(check_host, host, settings.webhook_allow_private)
    except UnsafeTargetError as err:
        raise invalid("body.url", str(err)) from None
    return url


async def wake(state: AppState, endpoint_id: str) -> None:
    """Start the endpoint's workflow, or wake it if it runs. A failure is logged, not raised: the
    change is committed, and the next change (or the poll of a running workflow) catches up."""
    if state.control is None:
        log.warning("no workflow service: endpoint %s not started", endpoint_id)
        return
    client: Client = state.control.client
    settings = state.settings
    inp = WebhookEndpointInput(
        endpoint_id=endpoint_id,
        poll_seconds=settings.webhook_poll_seconds,
        retry_max_seconds=settings.webhook_retry_max_seconds,
        timeout_seconds=settings.webhook_timeout_seconds,
    )
    try:
        await client.start_workflow(
            WEBHOOK_WORKFLOW,
            inp,
            id=webhook_workflow_id(endpoint_id),
            task_queue=state.control.task_queue,
            start_signal="wake",
            static_summary=f"outbound webhook endpoint {endpoint_id}",
        )
    except RPCError as err:
        log.error("endpoint %s: could not start or wake its workflow: %s", endpoint_id, err)


async def create_endpoint(
    state: AppState, principal: Principal, body: WebhookEndpointCreate
) -> WebhookEndpointCreated:
    principal.require(body.tenant_id)  # another tenant named in the body: 403, like every route
    principal.require_admin(body.tenant_id)
    url = await checked_url(body.url, state.settings)
    secret = new_secret()
    new = NewEndpoint(
        id=new_id("whep"),
        tenant_id=body.tenant_id,
        url=url,
        event_types=unique_types(body.event_types) or [],
        description=body.description,
        enabled=body.enabled,
        sealed_secret=seal(secret),
        created_by=principal.subject,
    )
    async with state.engine.begin() as conn:
        if await endpoints.count_of_tenant(conn, body.tenant_id) >= MAX_ENDPOINTS_PER_TENANT:
            raise Problem(409, f"a tenant may have at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints")
        row = await endpoints.insert_endpoint(conn, new)
    await wake(state, row.id)
    public = WebhookEndpointPublic.model_validate(row, from_attributes=True)
    return WebhookEndpointCreated(**public.model_dump(), secret=secret)


async def owned_for_admin(state: AppState, principal: Principal, endpoint_id: str) -> EndpointRow:
    """The endpoint of one of the caller's tenants (else 404), if the caller is its admin (else 403)."""
    if "\x00" in endpoint_id:
        raise not_found("webhook endpoint", repr(endpoint_id))
    async with state.engine.connect() as conn:
        row = await endpoints.owned_endpoint(conn, principal.tenants, endpoint_id)
    if row is None:
        raise not_found("webhook endpoint", endpoint_id)
    principal.require_admin(row.tenant_id)
    return row


async def update_endpoint(
    state: AppState, principal: Principal, endpoint_id: str, body: WebhookEndpointUpdate
) -> WebhookEndpointPublic:
    await owned_for_admin(state, principal, endpoint_id)
    url = None if body.url is None else await checked_url(body.url, state.settings)
    changes = EndpointChanges(
        url=url,
        event_types=unique_types(body.event_types),
        description=body.description,
        clear_description="description" in body.model_fields_set and body.description is None,
        enabled=body.enabled,
    )
    async with state.engine.begin() as conn:
        row = await endpoints.update_endpoint(conn, endpoint_id, changes)
    if row is None:
        raise not_found("webhook endpoint", endpoint_id)
    await wake(state, endpoint_id)
    return WebhookEndpointPublic.model_validate(row, from_attributes=True)


async def rotate_secret(state: AppState, principal: Principal, endpoint_id: str) -> WebhookSecretRotated:
    await owned_for_admin(state, principal, endpoint_id)
    secret = new_secret()
    until = datetime.now(UTC) + ROTATION_OVERLAP
    async with state.engine.begin() as conn:
        if not await endpoints.rotate_secret(conn, endpoint_id, seal(secret), until):
            raise not_found("webhook endpoint", endpoint_id)
    return WebhookSecretRotated(id=endpoint_id, secret=secret, previous_secret_valid_until=until)


async def delete_endpoint(state: AppState, principal: Principal, endpoint_id: str) -> None:
    await owned_for_admin(state, principal, endpoint_id)
    async with state.engine.begin() as conn:
        await endpoints.delete_endpoint(conn, endpoint_id)
    await wake(state, endpoint_id)  # it finds the endpoint gone and ends


async def replay(
    state: AppState, principal: Principal, endpoint_id: str, body: ReplayRequest
) -> ReplayQueued:
    await owned_for_admin(state, principal, endpoint_id)
    selection = outbox.ReplaySelection(
        event_ids=None if body.event_ids is None else [int(i) for i in body.event_ids],
        occurred_from=body.from_,
        occurred_to=body.to,
    )
    async with state.engine.begin() as conn:
        queued = await outbox.request_replay(conn, endpoint_id, selection)
    if queued:
        await wake(state, endpoint_id)
    return ReplayQueued(queued=queued)


async def stats(state: AppState, principal: Principal, endpoint_id: str) -> WebhookEndpointStats:
    row = await owned_for_admin(state, principal, endpoint_id)
    assert state.read_engine is not None  # AppState sets it
    async with state.read_engine.connect() as conn:
        pending = await outbox.pending_count(conn, row.tenant_id, row.event_types, row.position)
        dead = await outbox.dead_counts(conn, endpoint_id)
    return WebhookEndpointStats(
        delivered=row.delivered_count,
        failed_attempts=row.failed_attempts,
        pending=pending,
        dead=dead.dead,
        replaying=dead.replaying,
        failing_since=row.failing_since,
        last_success_at=row.last_success_at,
        last_error_at=row.last_error_at,
        last_error=row.last_error,
    )
