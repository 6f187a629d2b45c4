"""Segment endpoints (README "Dynamic segments"): create STATIC or DYNAMIC segments, add members,
read with size, preview a sample of members."""

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query
from sqlalchemy import String, and_, any_, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from api.auth import Principal
from api.deps import ConnDep, PrincipalDep
from api.errors import Problem, invalid, not_found
from api.routes.customers import to_public as customer_public
from api.schemas.common import JsonLimits, PageMeta, within_limits
from api.schemas.customers import NoNul
from api.schemas.segments import (
    SegmentCreate,
    SegmentMembersAdd,
    SegmentPreview,
    SegmentPublic,
    SegmentsPublic,
    SegmentSummary,
)
from core.enums import SegmentType
from core.ids import new_id
from db.audience import load_segment, segment_sample, segment_size
from db.engine import is_timeout
from db.models import Customer, Segment
from db.segment_filter import FilterError, validate_filter

router = APIRouter(prefix="/segments", tags=["segments"])

Skip = Annotated[int, Query(ge=0, le=10_000_000)]
Take = Annotated[int, Query(ge=1, le=1000)]
MAX_LISTED_ERRORS = 1000
# Deeper than any filter the grammar accepts (each level is an object and a list), shallow enough
# for any response serialiser.
STORED_FILTER_LIMITS = JsonLimits(depth=64, nodes=10**9, key_chars=10**9)
T = TypeVar("T")

ADD_MEMBERS = text(
    "INSERT INTO segment_members (segment_id, customer_id) "
    "SELECT :segment_id, unnest(CAST(:customer_ids AS varchar[])) "
    "ON CONFLICT DO NOTHING"
)


# ---- helpers ----------------------------------------------------------------------------------


async def load_owned(conn: AsyncConnection, principal: Principal, segment_id: str) -> Segment:
    """A segment of one of the caller's tenants, else 404 exactly as if it did not exist."""
    if "\x00" in segment_id:  # no id holds one, and Postgres would refuse to compare it
        raise not_found("segment", repr(segment_id))
    tenant_id = (
        await conn.execute(
            select(Segment.tenant_id).where(
                Segment.id == segment_id, Segment.tenant_id.in_(principal.tenants)
            )
        )
    ).scalar_one_or_none()
    segment = None if tenant_id is None else await load_segment(conn, tenant_id, segment_id)
    if segment is None:
        raise not_found("segment", segment_id)
    return segment


async def known_customer_ids(conn: AsyncConnection, tenant_id: str, ids: list[str]) -> list[str]:
    """The distinct ids, in first-seen order; any id that is not a customer of the tenant is a 422."""
    unique = list(dict.fromkeys(ids))
    wanted = bindparam("ids", unique, type_=ARRAY(String))
    found = set(
        (
            await conn.execute(
                select(Customer.id).where(Customer.tenant_id == tenant_id, Customer.id == any_(wanted))
            )
        ).scalars()
    )
    errors = [
        {"path": f"$.customerIds[{i}]", "message": f"{cid} is not a customer of this tenant"}
        for i, cid in enumerate(ids)
        if cid not in found
    ]
    if errors:
        shown = errors[:MAX_LISTED_ERRORS]
        raise Problem(422, f"{len(errors)} customer id(s) are not customers of this tenant", errors=shown)
    return unique


async def measured_size(conn: AsyncConnection, segment: Segment) -> int:
    """`segment_size`, with a data error (a filter comparing a stored value it cannot cast) as a 422.

    The savepoint keeps the request's transaction usable after such an error.
    """
    return await _evaluated(conn, segment_size(conn, segment))


async def _evaluated(conn: AsyncConnection, query: Awaitable[T]) -> T:
    """Run a query over a segment's members, a data error being the filter's 422 (see above)."""
    try:
        async with conn.begin_nested():
            return await query
    except DBAPIError as err:
        if is_timeout(err):
            raise  # the database is busy (a 503), the filter is not wrong
        raise invalid(
            "$.filter",
            "the filter cannot be evaluated on this tenant's customers: a stored value does not fit "
            "a comparison (e.g. a number comparison on an attribute that holds text)",
        ) from None


def to_summary(segment: Segment) -> SegmentSummary:
    return SegmentSummary(
        id=segment.id,
        tenant_id=segment.tenant_id,
        club_id=segment.club_id,
        name=segment.name,
        description=segment.description,
        type=SegmentType(segment.type),
        # A filter stored before filters were bounded may nest deeper than a response can show.
        filter=(
            within_limits(segment.filter, STORED_FILTER_LIMITS)
            if segment.type == SegmentType.DYNAMIC
            else None
        ),
        created_at=segment.created_at,
        updated_at=segment.updated_at,
    )


async def to_public(conn: AsyncConnection, segment: Segment) -> SegmentPublic:
    summary = to_summary(segment)
    return SegmentPublic(**summary.model_dump(), size=await measured_size(conn, segment))


# ---- routes -------------------------------------------------------------------------------------


@router.post("", status_code=201, response_model=SegmentPublic, response_model_by_alias=True)
async def create_segment(body: SegmentCreate, principal: PrincipalDep, conn: ConnDep) -> SegmentPublic:
    principal.require(body.tenant_id)
    errors = body.shape_errors()
    if errors:
        raise Problem(422, f"this is not a valid {body.type.value} segment", errors=errors)
    if body.type == SegmentType.DYNAMIC:
        try:
            validate_filter(body.filter)
        except FilterError as err:
            raise invalid(f"$.{err.path}", err.message) from None
        errors = body.unstorable_errors()
        if errors:
            raise Problem(422, f"this is not a valid {body.type.value} segment", errors=errors)
    members = await known_customer_ids(conn, body.tenant_id, body.customer_ids or [])
    segment_id = new_id("segment")
    await conn.execute(
        insert(Segment).values(
            id=segment_id,
            tenant_id=body.tenant_id,
            club_id=body.club_id,
            name=body.name,
            description=body.description,
            type=body.type.value,
            filter=body.filter if body.type == SegmentType.DYNAMIC else None,
        )
    )
    if members:
        await conn.execute(ADD_MEMBERS, {"segment_id": segment_id, "customer_ids": members})
    segment = await load_segment(conn, body.tenant_id, segment_id)
    assert segment is not None
    return await to_public(conn, segment)


@router.get("", response_model=SegmentsPublic, response_model_by_alias=True)
async def list_segments(
    principal: PrincipalDep,
    conn: ConnDep,
    tenant_id: Annotated[str, Query(alias="tenantId", min_length=1, max_length=100)],
    club_id: Annotated[str | None, Query(alias="clubId", max_length=100), NoNul] = None,
    type: SegmentType | None = None,
    skip: Skip = 0,
    take: Take = 25,
) -> SegmentsPublic:
    """Newest first, without sizes (ask `GET /segments/:id` for one)."""
    principal.require(tenant_id)
    conditions = [Segment.tenant_id == tenant_id]
    if club_id is not None:
        conditions.append(Segment.club_id == club_id)
    if type is not None:
        conditions.append(Segment.type == type.value)
    where = and_(*conditions)
    total = int((await conn.execute(select(func.count()).select_from(Segment).where(where))).scalar_one())
    rows = (
        (
            await conn.execute(
                select(Segment.__table__)
                .where(where)
                .order_by(Segment.created_at.desc(), Segment.id.desc())
                .offset(skip)
                .limit(take)
            )
        )
        .mappings()
        .all()
    )
    data = [to_summary(Segment(**row)) for row in rows]
    return SegmentsPublic(data=data, meta=PageMeta(total=total, skip=skip, take=take))


@router.get("/{segment_id}", response_model=SegmentPublic, response_model_by_alias=True)
async def get_segment(segment_id: str, principal: PrincipalDep, conn: ConnDep) -> SegmentPublic:
    return await to_public(conn, await load_owned(conn, principal, segment_id))


@router.get("/{segment_id}/preview", response_model=SegmentPreview, response_model_by_alias=True)
async def preview_segment(
    segment_id: str,
    principal: PrincipalDep,
    conn: ConnDep,
    limit: Annotated[int, Query(ge=1, le=100, description="members in the sample")] = 10,
) -> SegmentPreview:
    """`size` and a sample of up to `limit` members (as GET /customers/:id shows them), evaluated now."""
    segment = await load_owned(conn, principal, segment_id)
    rows = await _evaluated(conn, segment_sample(conn, segment, limit))
    return SegmentPreview(
        segment_id=segment.id,
        size=await measured_size(conn, segment),
        data=[customer_public(row) for row in rows],
    )


@router.post("/{segment_id}/members", response_model=SegmentPublic, response_model_by_alias=True)
async def add_members(
    segment_id: str, body: SegmentMembersAdd, principal: PrincipalDep, conn: ConnDep
) -> SegmentPublic:
    """Add customers to a STATIC segment; ids already in it are ignored. A DYNAMIC one is a 409."""
    segment = await load_owned(conn, principal, segment_id)
    if segment.type != SegmentType.STATIC:
        raise Problem(
            409,
            "members can only be added to a STATIC segment; this one is DYNAMIC",
            segmentType=segment.type,
        )
    members = await known_customer_ids(conn, segment.tenant_id, body.customer_ids)
    if members:
        await conn.execute(ADD_MEMBERS, {"segment_id": segment.id, "customer_ids": members})
        await conn.execute(
            update(Segment).where(Segment.id == segment.id).values(updated_at=datetime.now(UTC))
        )
    refreshed = await load_segment(conn, segment.tenant_id, segment.id)
    assert refreshed is not None
    return await to_public(conn, refreshed)


__all__ = ["router"]
