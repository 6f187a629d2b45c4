"""The tenant suppression list: addresses that never receive a message on a channel.

README "Consent and suppression" states the rules.

An address on the list is skipped with reason SUPPRESSED when a send snapshot is taken and again
just before each message, whichever customer holds it. Adding an address twice changes nothing
(200 with the existing entry); removing it lets later sends reach it again.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import ColumnElement, and_, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from api.auth import Principal
from api.deps import ConnDep, PrincipalDep
from api.errors import PROBLEM, invalid, not_found
from api.schemas.common import PageMeta
from api.schemas.customers import NoNul
from api.schemas.suppressions import (
    SuppressionCreate,
    SuppressionPublic,
    SuppressionsPublic,
    normalised_address,
)
from core.enums import Channel
from core.ids import new_id
from db.models import Suppression

router = APIRouter(prefix="/suppressions", tags=["suppressions"])

TenantQuery = Annotated[str, Query(alias="tenantId", min_length=1, max_length=100)]
AddressQuery = Annotated[str, Query(min_length=1, max_length=320), NoNul]
Skip = Annotated[int, Query(ge=0, le=10_000_000)]
Take = Annotated[int, Query(ge=1, le=1000)]


def to_public(row: Any) -> SuppressionPublic:
    return SuppressionPublic(
        id=row["id"],
        tenant_id=row["tenant_id"],
        channel=Channel(row["channel"]),
        address=row["address"],
        note=row["note"],
        created_by=row["created_by"],
        created_at=row["created_at"],
    )


def _address(channel: Channel, address: str) -> str:
    try:
        return normalised_address(channel, address)
    except ValueError as err:
        raise invalid("query.address", str(err)) from None


def _entry(tenant_id: str, channel: Channel, address: str) -> ColumnElement[bool]:
    """The entry of a normalised address."""
    return and_(
        Suppression.tenant_id == tenant_id,
        Suppression.channel == channel.value,
        Suppression.address == address,
    )


async def _load(conn: AsyncConnection, principal: Principal, suppression_id: str) -> Any:
    """An entry of one of the caller's tenants, else 404 exactly as if it did not exist."""
    if "\x00" in suppression_id:  # no id holds one, and Postgres would refuse to compare it
        raise not_found("suppression", repr(suppression_id))
    row = (
        (
            await conn.execute(
                select(Suppression.__table__).where(
                    Suppression.id == suppression_id, Suppression.tenant_id.in_(principal.tenants)
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise not_found("suppression", suppression_id)
    return row


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
    inserted = (
        await conn.execute(
            insert(Suppression)
            .values(
                id=new_id("suppression"),
                tenant_id=body.tenant_id,
                channel=body.channel.value,
                address=body.address,
                note=body.note,
                created_by=principal.subject,
            )
            .on_conflict_do_nothing(constraint="uq_suppressions_tenant_channel_address")
            .returning(Suppression.id)
        )
    ).scalar_one_or_none()
    if inserted is None:
        response.status_code = 200
    where = _entry(body.tenant_id, body.channel, body.address)
    row = (await conn.execute(select(Suppression.__table__).where(where))).mappings().one()
    return to_public(row)


@router.get("", response_model=SuppressionsPublic, response_model_by_alias=True)
async def list_suppressions(
    principal: PrincipalDep,
    conn: ConnDep,
    tenant_id: TenantQuery,
    channel: Channel | None = None,
    address: AddressQuery | None = None,
    skip: Skip = 0,
    take: Take = 25,
) -> SuppressionsPublic:
    """Newest first; `address` (with `channel`) finds one entry."""
    principal.require(tenant_id)
    conditions = [Suppression.tenant_id == tenant_id]
    if channel is not None:
        conditions.append(Suppression.channel == channel.value)
    if address is not None:
        if channel is None:
            raise invalid("query.channel", "give the channel of the address")
        conditions.append(Suppression.address == _address(channel, address))
    where = and_(*conditions)
    total = int((await conn.execute(select(func.count()).select_from(Suppression).where(where))).scalar_one())
    rows = (
        (
            await conn.execute(
                select(Suppression.__table__)
                .where(where)
                .order_by(Suppression.created_at.desc(), Suppression.id.desc())
                .offset(skip)
                .limit(take)
            )
        )
        .mappings()
        .all()
    )
    return SuppressionsPublic(
        data=[to_public(r) for r in rows], meta=PageMeta(total=total, skip=skip, take=take)
    )


@router.get("/{suppression_id}", response_model=SuppressionPublic, response_model_by_alias=True)
async def get_suppression(suppression_id: str, principal: PrincipalDep, conn: ConnDep) -> SuppressionPublic:
    return to_public(await _load(conn, principal, suppression_id))


@router.delete("/{suppression_id}", status_code=204)
async def remove_suppression(suppression_id: str, principal: PrincipalDep, conn: ConnDep) -> Response:
    row = await _load(conn, principal, suppression_id)
    await conn.execute(delete(Suppression).where(Suppression.id == row["id"]))
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
    principal: PrincipalDep, conn: ConnDep, tenant_id: TenantQuery, channel: Channel, address: AddressQuery
) -> Response:
    """Take an address off the list by value (`?tenantId=&channel=&address=`); 404 if it is not on it."""
    principal.require(tenant_id)
    removed = (
        await conn.execute(
            delete(Suppression)
            .where(_entry(tenant_id, channel, _address(channel, address)))
            .returning(Suppression.id)
        )
    ).scalar_one_or_none()
    if removed is None:
        raise not_found("suppressed address", address)
    return Response(status_code=204)
