"""Segment endpoints (README "Dynamic segments"): create STATIC or DYNAMIC segments, add members,
read with size, preview a sample of members."""

from collections.abc import Awaitable
from dataclasses import asdict
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from api.deps import SEGMENT, ConnDep, OwnedSegment, PrincipalDep, get_owned
from api.errors import Problem, invalid
from api.schemas.common import ClubIdQuery, PageWindow, TenantIdQuery, paginate
from api.schemas.customers import CustomerPublic
from api.schemas.segments import (
    SegmentCreate,
    SegmentMembersAdd,
    SegmentPreview,
    SegmentPublic,
    SegmentsPublic,
)
from core.enums import SegmentType
from db.audience import segment_sample, segment_size
from db.customers import customer_ids_of_tenant
from db.engine import is_timeout
from db.segment_filter import FilterError, validate_filter
from db.segments import SegmentFilter, SegmentRow, insert_segment, mark_changed, page_segments
from db.segments import add_members as add_static_members

router = APIRouter(prefix="/segments", tags=["segments"])

MAX_LISTED_ERRORS = 1000
T = TypeVar("T")


# ---- helpers ----------------------------------------------------------------------------------


async def known_customer_ids(conn: AsyncConnection, tenant_id: str, ids: list[str]) -> list[str]:
    """The distinct ids, in first-seen order; any id that is not a customer of the tenant is a 422."""
    unique = list(dict.fromkeys(ids))
    found = await customer_ids_of_tenant(conn, tenant_id, unique)
    errors = [
        {"path": f"$.customerIds[{i}]", "message": f"{cid} is not a customer of this tenant"}
        for i, cid in enumerate(ids)
        if cid not in found
    ]
    if errors:
        shown = errors[:MAX_LISTED_ERRORS]
        raise Problem(422, f"{len(errors)} customer id(s) are not customers of this tenant", errors=shown)
    return unique


async def measured_size(conn: AsyncConnection, segment: SegmentRow) -> int:
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


async def to_public(conn: AsyncConnection, segment: SegmentRow) -> SegmentPublic:
    size = await measured_size(conn, segment)
    return SegmentPublic.model_validate({**asdict(segment), "size": size})


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
    segment_id = await insert_segment(
        conn,
        tenant_id=body.tenant_id,
        club_id=body.club_id,
        name=body.name,
        description=body.description,
        type=body.type,
        filter=body.filter,
    )
    if members:
        await add_static_members(conn, segment_id, members)
    return await to_public(conn, await get_owned(SEGMENT, segment_id, [body.tenant_id], conn))


@router.get("", response_model=SegmentsPublic, response_model_by_alias=True)
async def list_segments(
    principal: PrincipalDep,
    conn: ConnDep,
    tenant_id: TenantIdQuery,
    window: PageWindow,
    club_id: ClubIdQuery = None,
    type: SegmentType | None = None,
) -> SegmentsPublic:
    """Newest first, without sizes (ask `GET /segments/:id` for one)."""
    principal.require(tenant_id)
    rows = await page_segments(conn, SegmentFilter(tenant_id, club_id=club_id, type=type), window)
    return paginate(SegmentsPublic, rows, window)


@router.get("/{segment_id}", response_model=SegmentPublic, response_model_by_alias=True)
async def get_segment(segment: OwnedSegment, conn: ConnDep) -> SegmentPublic:
    return await to_public(conn, segment)


@router.get("/{segment_id}/preview", response_model=SegmentPreview, response_model_by_alias=True)
async def preview_segment(
    segment: OwnedSegment,
    conn: ConnDep,
    limit: Annotated[int, Query(ge=1, le=100, description="members in the sample")] = 10,
) -> SegmentPreview:
    """`size` and a sample of up to `limit` members (as GET /customers/:id shows them), evaluated now."""
    rows = await _evaluated(conn, segment_sample(conn, segment, limit))
    return SegmentPreview(
        segment_id=segment.id,
        size=await measured_size(conn, segment),
        data=[CustomerPublic.model_validate(row, from_attributes=True) for row in rows],
    )


@router.post("/{segment_id}/members", response_model=SegmentPublic, response_model_by_alias=True)
async def add_members(
    segment: OwnedSegment, body: SegmentMembersAdd, principal: PrincipalDep, conn: ConnDep
) -> SegmentPublic:
    """Add customers to a STATIC segment; ids already in it are ignored. A DYNAMIC one is a 409."""
    if segment.type != SegmentType.STATIC:
        raise Problem(
            409,
            "members can only be added to a STATIC segment; this one is DYNAMIC",
            segmentType=segment.type,
        )
    members = await known_customer_ids(conn, segment.tenant_id, body.customer_ids)
    if members:
        await add_static_members(conn, segment.id, members)
        await mark_changed(conn, segment.id)
    return await to_public(conn, await get_owned(SEGMENT, segment.id, principal.tenants, conn))


__all__ = ["router"]
