"""One way for a route to load the record its path names: `get_owned`, and the `Owned*` dependencies.

A record of another tenant is answered exactly like a record that does not exist (404, the id not
echoed; README "Security"), and so is an id no record can hold (one with a NUL character, which
Postgres would refuse to compare): the caller learns nothing about ids it may not see.
"""

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Path
from sqlalchemy.ext.asyncio import AsyncConnection

from api.deps import ConnDep, PrincipalDep
from api.errors import not_found
from db.customers import CustomerRow, owned_customer
from db.segments import SegmentRow, owned_segment
from db.suppressions import SuppressionRow, owned_suppression
from db.templates import TemplateRow, owned_template

R = TypeVar("R")


@dataclass(frozen=True)
class Kind(Generic[R]):
    """A kind of record a path can name: how a 404 calls it, and how to read one of some tenants."""

    name: str
    load: Callable[[AsyncConnection, Collection[str], str], Awaitable[R | None]]


CUSTOMER = Kind("customer", owned_customer)
SEGMENT = Kind("segment", owned_segment)
TEMPLATE = Kind("template", owned_template)
# An edit writes the next version from what it read: the row stays locked until the commit.
TEMPLATE_FOR_EDIT = Kind("template", partial(owned_template, for_update=True))
SUPPRESSION = Kind("suppression", owned_suppression)


async def get_owned(kind: Kind[R], id_: str, tenants: Collection[str], conn: AsyncConnection) -> R:
    """The record `id_` of one of `tenants`, else the 404 of a record that does not exist."""
    if "\x00" in id_:  # no id holds one, and Postgres would refuse to compare it
        raise not_found(kind.name, repr(id_))
    row = await kind.load(conn, tenants, id_)
    if row is None:
        raise not_found(kind.name, id_)
    return row


def owned(kind: Kind[R], param: str) -> Callable[..., Awaitable[R]]:
    """A dependency giving the record named by the path parameter `param`, of the caller's tenants."""

    async def dependency(id_: Annotated[str, Path(alias=param)], principal: PrincipalDep, conn: ConnDep) -> R:
        return await get_owned(kind, id_, principal.tenants, conn)

    return dependency


OwnedCustomer = Annotated[CustomerRow, Depends(owned(CUSTOMER, "customer_id"))]
OwnedSegment = Annotated[SegmentRow, Depends(owned(SEGMENT, "segment_id"))]
OwnedTemplate = Annotated[TemplateRow, Depends(owned(TEMPLATE, "template_id"))]
EditedTemplate = Annotated[TemplateRow, Depends(owned(TEMPLATE_FOR_EDIT, "template_id"))]
OwnedSuppression = Annotated[SuppressionRow, Depends(owned(SUPPRESSION, "suppression_id"))]
