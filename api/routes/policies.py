"""A tenant's sending policy: quiet hours, frequency caps and auto-pause (README "Sending policies").

`GET /tenants/:tenantId/policy` answers the policy in force (the defaults until the tenant sets
one); `PUT` replaces it whole, and the next page of every campaign of the tenant applies it. A
campaign may override quiet hours and opt out of frequency caps with its own `policy` field.
"""

from typing import Annotated

from fastapi import APIRouter, Path

from api.auth import Principal
from api.deps import ConnDep, PrincipalDep, SettingsDep
from api.errors import not_found
from api.schemas.campaigns import TenantId
from core.policy import TenantPolicy, completed, defaults
from db import policies

router = APIRouter(prefix="/tenants", tags=["policies"])


def _visible(principal: Principal, tenant_id: str) -> None:
    """A tenant the caller may not see answers exactly as one that does not exist (404)."""
    if tenant_id not in principal.tenants:
        raise not_found("tenant", tenant_id)


TenantPath = Annotated[TenantId, Path(alias="tenantId")]


@router.get("/{tenantId}/policy", response_model=TenantPolicy, response_model_by_alias=True)
async def get_policy(
    tenant_id: TenantPath, principal: PrincipalDep, conn: ConnDep, settings: SettingsDep
) -> TenantPolicy:
    """The tenant's sending policy (the defaults until it sets one)."""
    _visible(principal, tenant_id)
    return await policies.tenant_policy(conn, tenant_id, defaults(settings.sms_quiet_hours_default))


@router.put("/{tenantId}/policy", response_model=TenantPolicy, response_model_by_alias=True)
async def put_policy(
    tenant_id: TenantPath, body: TenantPolicy, principal: PrincipalDep, conn: ConnDep, settings: SettingsDep
) -> TenantPolicy:
    """Replace the tenant's sending policy whole; a field left out takes its default (for the SMS
    rules, the deployment's: core.policy.completed)."""
    _visible(principal, tenant_id)
    policy = completed(body, settings.sms_quiet_hours_default)
    await policies.put_tenant_policy(conn, tenant_id, policy)
    return policy
