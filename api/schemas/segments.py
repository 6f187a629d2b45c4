"""Segment schemas: STATIC (a list of customer ids) or DYNAMIC (a filter, see db/segment_filter.py)."""

from typing import Annotated, Any

from pydantic import Field

from api.schemas.common import ApiIn, ApiOut, PageMeta, UtcDatetime
from api.schemas.customers import UNSTORABLE, CustomerPublic, NoNul, unstorable_path
from core.enums import SegmentType

MAX_MEMBERS_PER_CALL = 100_000

CustomerId = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_\-]+$")]
CustomerIds = Annotated[list[CustomerId], Field(max_length=MAX_MEMBERS_PER_CALL)]


class SegmentCreate(ApiIn):
    tenant_id: Annotated[str, Field(min_length=1, max_length=100), NoNul]
    club_id: Annotated[str, Field(max_length=100), NoNul] | None = None
    name: Annotated[str, Field(min_length=1, max_length=200), NoNul]
    description: Annotated[str, Field(max_length=5000), NoNul] | None = None
    type: SegmentType
    customer_ids: CustomerIds | None = None
    filter: dict[str, Any] | None = None

    def shape_errors(self) -> list[dict[str, str]]:
        """Fields that belong to the other segment type, or that this type lacks."""
        errors: list[dict[str, str]] = []
        if self.type == SegmentType.STATIC and self.filter is not None:
            errors.append({"path": "$.filter", "message": "a STATIC segment has customerIds, not a filter"})
        if self.type == SegmentType.DYNAMIC:
            if self.customer_ids is not None:
                errors.append(
                    {"path": "$.customerIds", "message": "a DYNAMIC segment has a filter, not customerIds"}
                )
            if self.filter is None:
                errors.append({"path": "$.filter", "message": "a DYNAMIC segment needs a filter"})
        return errors

    def unstorable_errors(self) -> list[dict[str, str]]:
        """A filter value Postgres cannot store. Checked once the filter is known to be within its
        bounds (db.segment_filter), so that an oversized one costs no walk over all its values."""
        if self.filter is not None and (where := unstorable_path(self.filter, "$.filter")) is not None:
            return [{"path": where, "message": UNSTORABLE}]
        return []


class SegmentMembersAdd(ApiIn):
    customer_ids: CustomerIds


class SegmentSummary(ApiOut):
    id: str
    tenant_id: str
    club_id: str | None
    name: str
    description: str | None
    type: SegmentType
    filter: dict[str, Any] | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class SegmentPublic(SegmentSummary):
    size: int


class SegmentsPublic(ApiOut):
    """The list leaves `size` out: counting every segment of a page could scan the whole tenant."""

    data: list[SegmentSummary]
    meta: PageMeta


class SegmentPreview(ApiOut):
    """A sample of the members: the first `limit` in id order (ids are random, so a fair sample)."""

    segment_id: str
    size: int
    data: list[CustomerPublic]
