"""Sender identities (docs/tenants-and-providers.md): who a tenant's messages come from.

Anyone of the tenant may read them; creating, changing, deleting and verifying need the `admin`
role. `POST /sender-identities/{id}/verify` reads the DKIM TXT record the identity shows and marks
its domain verified when it holds the identity's key: until then no campaign may send as it.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from api.deps import ConnDep, PrincipalDep, SettingsDep
from api.errors import Problem, not_found
from api.schemas.common import ClubIdQuery, PageWindow, TenantIdQuery, paginate
from api.schemas.sender_identities import (
    SenderIdentitiesPublic,
    SenderIdentityCreate,
    SenderIdentityPatch,
    SenderIdentityPublic,
)
from api.tenant_workspace import (
    check_identity_accounts,
    identity_public,
    new_identity,
    patched_identity,
    verified_now,
)
from core.settings import Settings
from db import sender_identities as identities
from db.pages import Slice
from db.sender_identities import IdentityRow
from providers.dns_check import DnsTxtResolver, TxtResolver

router = APIRouter(prefix="/sender-identities", tags=["sender identities"])

IdentityId = Annotated[str, Path(alias="identityId", min_length=1, max_length=40)]


async def get_txt_resolver(settings: SettingsDep) -> TxtResolver:
    """DNS as the verification reads it (tests may override this dependency)."""
    return resolver_for(settings)


def resolver_for(settings: Settings) -> TxtResolver:
    return DnsTxtResolver(settings.dns_nameservers)


TxtResolverDep = Annotated[TxtResolver, Depends(get_txt_resolver)]


async def _owned(conn: ConnDep, principal: PrincipalDep, identity_id: str) -> IdentityRow:
    row = (
        None if "\x00" in identity_id else await identities.get_identity(conn, principal.tenants, identity_id)
    )
    if row is None:
        raise not_found("sender identity", identity_id)
    return row


@router.post("", status_code=201, response_model=SenderIdentityPublic, response_model_by_alias=True)
async def create_identity(
    body: SenderIdentityCreate, principal: PrincipalDep, conn: ConnDep
) -> SenderIdentityPublic:
    """A new identity; an email one gets its DKIM key now and must be verified before use."""
    principal.require_admin(body.tenant_id)
    row = new_identity(body)
    await check_identity_accounts(conn, row)
    return identity_public(await identities.insert_identity(conn, row))


@router.get("", response_model=SenderIdentitiesPublic, response_model_by_alias=True)
async def list_identities(
    principal: PrincipalDep,
    conn: ConnDep,
    tenant_id: TenantIdQuery,
    window: PageWindow,
    club_id: ClubIdQuery = None,
) -> SenderIdentitiesPublic:
    """The tenant's identities, newest first (`clubId`: one club's)."""
    principal.require(tenant_id)
    rows = await identities.list_identities(conn, tenant_id, club_id, window)
    return paginate(
        SenderIdentitiesPublic, Slice(rows.total, [identity_public(r) for r in rows.rows]), window
    )


@router.get("/{identityId}", response_model=SenderIdentityPublic, response_model_by_alias=True)
async def get_identity(
    identity_id: IdentityId, principal: PrincipalDep, conn: ConnDep
) -> SenderIdentityPublic:
    return identity_public(await _owned(conn, principal, identity_id))


@router.patch("/{identityId}", response_model=SenderIdentityPublic, response_model_by_alias=True)
async def patch_identity(
    identity_id: IdentityId, body: SenderIdentityPatch, principal: PrincipalDep, conn: ConnDep
) -> SenderIdentityPublic:
    """Merge-patch the identity; a new domain or key makes it unverified again."""
    row = await _owned(conn, principal, identity_id)
    principal.require_admin(row.tenant_id)
    changed = patched_identity(row, body)
    await check_identity_accounts(conn, changed)
    updated = await identities.update_identity(conn, changed)
    if updated is None:
        raise not_found("sender identity", identity_id)
    return identity_public(updated)


@router.delete("/{identityId}", status_code=204)
async def delete_identity(identity_id: IdentityId, principal: PrincipalDep, conn: ConnDep) -> Response:
    """409 while a campaign not yet over, or the tenant's settings, name it."""
    row = await _owned(conn, principal, identity_id)
    principal.require_admin(row.tenant_id)
    if await identities.identity_in_use(conn, row.tenant_id, row.id):
        raise Problem(409, "a campaign or the tenant's settings use this identity")
    await identities.delete_identity(conn, row.tenant_id, row.id)
    return Response(status_code=204)


@router.post("/{identityId}/verify", response_model=SenderIdentityPublic, response_model_by_alias=True)
async def verify_identity(
    identity_id: IdentityId, principal: PrincipalDep, conn: ConnDep, resolver: TxtResolverDep
) -> SenderIdentityPublic:
    """Read the identity's DKIM TXT record: verified when it holds the identity's key, else 422."""
    row = await _owned(conn, principal, identity_id)
    principal.require_admin(row.tenant_id)
    updated = await identities.update_identity(conn, await verified_now(row, resolver))
    if updated is None:
        raise not_found("sender identity", identity_id)
    return identity_public(updated)
