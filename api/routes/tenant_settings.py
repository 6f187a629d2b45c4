"""`GET/PATCH /tenants/{tenantId}/settings` (docs/tenants-and-providers.md): the tenant's default
sender identity and provider accounts, timezone, SMS help text and sending policy. Both need the
`admin` role; another tenant is a 404.
"""

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from api.auth import Principal
from api.deps import ConnDep, PrincipalDep, SettingsDep
from api.errors import invalid, not_found
from api.schemas.customers import TenantId
from api.schemas.tenant_settings import TenantSettingsPatch, TenantSettingsPublic, merge_patch
from api.tenant_workspace import check_account_ref
from core.policy import TenantPolicy, defaults
from db import policies, sender_identities
from db.tenant_settings import WorkspaceSettings, put_workspace_settings, workspace_settings

router = APIRouter(prefix="/tenants", tags=["tenant settings"])
TenantPath = Annotated[TenantId, Path(alias="tenantId")]
_DEFAULT = WorkspaceSettings()


def _visible_admin(principal: Principal, tenant_id: str) -> None:
    """A tenant the caller may not see answers as one that does not exist (404); then `admin`."""
    if tenant_id not in principal.tenants:
        raise not_found("tenant", tenant_id)
    principal.require_admin(tenant_id)


def _public(value: WorkspaceSettings, policy: TenantPolicy) -> TenantSettingsPublic:
    return TenantSettingsPublic(
        default_sender_identity_id=value.default_sender_identity_id,
        default_email_account_id=value.default_email_account_id,
        default_sms_account_id=value.default_sms_account_id,
        timezone=value.timezone,
        sms_help_text=value.sms_help_text,
        policy=policy,
    )


@router.get("/{tenantId}/settings", response_model=TenantSettingsPublic, response_model_by_alias=True)
async def get_settings(
    tenant_id: TenantPath, principal: PrincipalDep, conn: ConnDep, settings: SettingsDep
) -> TenantSettingsPublic:
    """The tenant's settings, every value at its default until set."""
    _visible_admin(principal, tenant_id)
    policy = await policies.tenant_policy(conn, tenant_id, defaults(settings.sms_quiet_hours_default))
    return _public(await workspace_settings(conn, tenant_id), policy)


@router.patch("/{tenantId}/settings", response_model=TenantSettingsPublic, response_model_by_alias=True)
async def patch_settings(
    tenant_id: TenantPath,
    body: TenantSettingsPatch,
    principal: PrincipalDep,
    conn: ConnDep,
    settings: SettingsDep,
) -> TenantSettingsPublic:
    """Merge-patch the settings; the next page of every campaign of the tenant applies them."""
    _visible_admin(principal, tenant_id)
    base = defaults(settings.sms_quiet_hours_default)
    policy = await policies.tenant_policy(conn, tenant_id, base)
    current = await workspace_settings(conn, tenant_id)
    sent = body.model_fields_set
    values = {name: getattr(body, name) for name in sent - {"policy"}}
    changed = replace(current, **{k: v if v is not None else getattr(_DEFAULT, k) for k, v in values.items()})
    await _check_refs(conn, tenant_id, changed)
    await put_workspace_settings(conn, tenant_id, changed)
    if "policy" in sent:
        policy = _patched_policy(policy, body.policy, base)
        await policies.put_tenant_policy(conn, tenant_id, policy)
    return _public(changed, policy)


def _patched_policy(
    policy: TenantPolicy, patch: dict[str, object] | None, base: TenantPolicy
) -> TenantPolicy:
    if patch is None:
        return base
    merged = merge_patch(policy.model_dump(mode="json", by_alias=True), patch)
    try:
        return TenantPolicy.model_validate(merged)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise invalid(f"body.policy.{where}".rstrip("."), str(first.get("msg", "invalid"))) from None


async def _check_refs(conn: AsyncConnection, tenant_id: str, value: WorkspaceSettings) -> None:
    """The defaults named are the tenant's own identity and accounts of the right kind."""
    identity_id = value.default_sender_identity_id
    if (
        identity_id is not None
        and await sender_identities.get_identity(conn, [tenant_id], identity_id) is None
    ):
        raise invalid("body.defaultSenderIdentityId", "no such sender identity in this tenant")
    await check_account_ref(
        conn, tenant_id, "body.defaultEmailAccountId", "SMTP", value.default_email_account_id
    )
    await check_account_ref(conn, tenant_id, "body.defaultSmsAccountId", "SMS", value.default_sms_account_id)
