"""Segment schemas: STATIC (a list of customer ids) or DYNAMIC (a filter, see db/segment_filter.py)."""

from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator

from api.schemas.common import ApiIn, ApiOut, JsonLimits, Page, UtcDatetime, within_limits
from api.schemas.customers import UNSTORABLE, CustomerPublic, NoNul, unstorable_path
from core.enums import SegmentType

MAX_MEMBERS_PER_CALL = 100_000
# Deeper than any filter the grammar accepts (each level is an object and a list), shallow enough
# for any response serialiser.
STORED_FILTER_LIMITS = JsonLimits(depth=64, nodes=10**9, key_chars=10**9)

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

    @field_validator("filter", mode="before")
    @classmethod
    def _showable(cls, value: Any, info: ValidationInfo) -> Any:
        """A DYNAMIC segment's filter; a filter stored before filters were bounded may nest deeper
        than a response can show, and is cut there."""
        if info.data.get("type") != SegmentType.DYNAMIC or value is None:
            return None
        return within_limits(value, STORED_FILTER_LIMITS)


class SegmentPublic(SegmentSummary):
    size: int


class SegmentsPublic(Page[SegmentSummary]):
    """The list leaves `size` out: counting every segment of a page could scan the whole tenant."""


class SegmentPreview(ApiOut):
    """A sample of the members: the first `limit` in id order (ids are random, so a fair sample)."""

    segment_id: str
    size: int
    data: list[CustomerPublic]
