"""The tenant suppression list: addresses that never receive a message on a channel.

README "Consent and suppression" states the rules.

An address on the list is skipped with reason SUPPRESSED when a send snapshot is taken and again
just before each message, whichever customer holds it. Adding an address twice changes nothing
(200 with the existing entry); removing it lets later sends reach it again.
"""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import ConnDep, OwnedSuppression, PrincipalDep
from api.errors import PROBLEM, invalid, not_found
from api.schemas.common import PageWindow, TenantIdQuery, paginate
from api.schemas.customers import NoNul
from api.schemas.suppressions import (
    SuppressionCreate,
    SuppressionPublic,
    SuppressionsPublic,
    normalised_address,
)
from core.enums import Channel
from db import suppressions as entries

router = APIRouter(prefix="/suppressions", tags=["suppressions"])

AddressQuery = Annotated[str, Query(min_length=1, max_length=320), NoNul]


def _address(channel: Channel, address: str) -> str:
    try:
        return normalised_address(channel, address)
    except ValueError as err:
        raise invalid("query.address", str(err)) from None


@router.post(
    "",
    status_code=201,
    response_model=SuppressionPublic,
    response_model_by_alias=True,
    responses={200: {"model": SuppressionPublic, "description": "The address was on the list already"}},
)
async def add_suppression(
    body: SuppressionCreate, principal: PrincipalDep, conn: ConnDep, response: Response
) -> SuppressionPublic:
    """Put an address on the list: 201, or 200 with the entry when it is on it already."""
    principal.require(body.tenant_id)
    entry, created = await entries.add_suppression(
        conn,
        tenant_id=body.tenant_id,
        channel=body.channel,
        address=body.address,
        note=body.note,
        created_by=principal.subject,
    )
    if not created:
        response.status_code = 200
    return SuppressionPublic.model_validate(entry, from_attributes=True)


@router.get("", response_model=SuppressionsPublic, response_model_by_alias=True)
async def list_suppressions(
    principal: PrincipalDep,
    conn: ConnDep,
    tenant_id: TenantIdQuery,
    window: PageWindow,
    channel: Channel | None = None,
    address: AddressQuery | None = None,
) -> SuppressionsPublic:
    """Newest first; `address` (with `channel`) finds one entry."""
    principal.require(tenant_id)
    if address is not None:
        if channel is None:
            raise invalid("query.channel", "give the channel of the address")
        address = _address(channel, address)
    where = entries.SuppressionFilter(tenant_id, channel=channel, address=address)
    rows = await entries.page_suppressions(conn, where, window)
    return paginate(SuppressionsPublic, rows, window)


@router.get("/{suppression_id}", response_model=SuppressionPublic, response_model_by_alias=True)
async def get_suppression(entry: OwnedSuppression) -> SuppressionPublic:
    return SuppressionPublic.model_validate(entry, from_attributes=True)


@router.delete("/{suppression_id}", status_code=204)
async def remove_suppression(entry: OwnedSuppression, conn: ConnDep) -> Response:
    await entries.remove_suppression(conn, entry.id)
    return Response(status_code=204)


@router.delete(
    "",
    status_code=204,
    responses={
        404: {
            "description": "The address is not on the list",
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    },
)
async def remove_suppressed_address(
    principal: PrincipalDep, conn: ConnDep, tenant_id: TenantIdQuery, channel: Channel, address: AddressQuery
) -> Response:
    """Take an address off the list by value (`?tenantId=&channel=&address=`); 404 if it is not on it."""
    principal.require(tenant_id)
    if not await entries.remove_address(conn, tenant_id, channel, _address(channel, address)):
        raise not_found("suppressed address", address)
    return Response(status_code=204)
