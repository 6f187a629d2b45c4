"""Provider accounts (docs/tenants-and-providers.md): the SMTP relays and SMS providers a tenant
sends through. Anyone of the tenant may read them (credentials never shown); writes need `admin`.
A host pointing into a private network is a 422 unless the operator allows it.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Response

from api.deps import ConnDep, PrincipalDep, SettingsDep
from api.errors import Problem, not_found
from api.schemas.common import PageWindow, TenantIdQuery, paginate
from api.schemas.provider_accounts import (
    ProviderAccountCreate,
    ProviderAccountPatch,
    ProviderAccountPublic,
    ProviderAccountsPublic,
)
from api.tenant_workspace import account_public, new_account, patched_account
from db import provider_accounts as accounts
from db.pages import Slice
from db.provider_accounts import AccountRow

router = APIRouter(prefix="/provider-accounts", tags=["provider accounts"])

AccountId = Annotated[str, Path(alias="accountId", min_length=1, max_length=40)]


async def _owned(conn: ConnDep, principal: PrincipalDep, account_id: str) -> AccountRow:
    row = None if "\x00" in account_id else await accounts.get_account(conn, principal.tenants, account_id)
    if row is None:
        raise not_found("provider account", account_id)
    return row


@router.post("", status_code=201, response_model=ProviderAccountPublic, response_model_by_alias=True)
async def create_account(
    body: ProviderAccountCreate, principal: PrincipalDep, conn: ConnDep, settings: SettingsDep
) -> ProviderAccountPublic:
    principal.require_admin(body.tenant_id)
    row = await new_account(body, settings.provider_hosts_allow_private)
    stored = await accounts.insert_account(
        conn,
        id_=row.id,
        tenant_id=row.tenant_id,
        kind=row.kind,
        name=row.name,
        config=row.config,
        secret=row.secret,
    )
    return account_public(stored)


@router.get("", response_model=ProviderAccountsPublic, response_model_by_alias=True)
async def list_accounts(
    principal: PrincipalDep,
    conn: ConnDep,
    tenant_id: TenantIdQuery,
    window: PageWindow,
    kind: Literal["SMTP", "SMS"] | None = None,
) -> ProviderAccountsPublic:
    principal.require(tenant_id)
    rows = await accounts.list_accounts(conn, tenant_id, kind, window)
    return paginate(ProviderAccountsPublic, Slice(rows.total, [account_public(r) for r in rows.rows]), window)


@router.get("/{accountId}", response_model=ProviderAccountPublic, response_model_by_alias=True)
async def get_account(account_id: AccountId, principal: PrincipalDep, conn: ConnDep) -> ProviderAccountPublic:
    return account_public(await _owned(conn, principal, account_id))


@router.patch("/{accountId}", response_model=ProviderAccountPublic, response_model_by_alias=True)
async def patch_account(
    account_id: AccountId,
    body: ProviderAccountPatch,
    principal: PrincipalDep,
    conn: ConnDep,
    settings: SettingsDep,
) -> ProviderAccountPublic:
    """Merge-patch the account; workers use the change from their next page."""
    row = await _owned(conn, principal, account_id)
    principal.require_admin(row.tenant_id)
    changed = await patched_account(row, body, settings.provider_hosts_allow_private)
    updated = await accounts.update_account(
        conn,
        tenant_id=row.tenant_id,
        account_id=row.id,
        name=changed.name,
        config=changed.config,
        secret=changed.secret,
    )
    if updated is None:
        raise not_found("provider account", account_id)
    return account_public(updated)


@router.delete("/{accountId}", status_code=204)
async def delete_account(account_id: AccountId, principal: PrincipalDep, conn: ConnDep) -> Response:
    """409 while an identity or the tenant's settings name the account."""
    row = await _owned(conn, principal, account_id)
    principal.require_admin(row.tenant_id)
    if await accounts.account_in_use(conn, row.tenant_id, row.id):
        raise Problem(409, "a sender identity or the tenant's settings use this account")
    await accounts.delete_account(conn, row.tenant_id, row.id)
    return Response(status_code=204)
