"""Customers of a tenant: the reads and the writes of single records (bulk upserts live in
db.customer_import), each statement in one function, every record a typed `CustomerRow`."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, String, and_, any_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import Channel
from db.models import Customer
from db.pages import Slice, Window, newest_first
from db.rows import row_of


@dataclass(frozen=True)
class CustomerRow:
    """One stored customer, every column of `customers`."""

    id: str
    tenant_id: str
    external_id: str
    club_id: str | None
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    attributes: dict[str, Any]
    email_opt_in: bool
    sms_opt_in: bool
    email_unsubscribed_at: datetime | None
    sms_unsubscribed_at: datetime | None
    email_bounced_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: RowMapping) -> "CustomerRow":
        return row_of(cls, row)

    @property
    def email_unsubscribed(self) -> bool:
        return self.email_unsubscribed_at is not None

    @property
    def sms_unsubscribed(self) -> bool:
        return self.sms_unsubscribed_at is not None

    @property
    def email_bounced(self) -> bool:
        return self.email_bounced_at is not None


@dataclass(frozen=True)
class CustomerFilter:
    """A listing's conditions; `email` must be canonical (core.addresses), as stored."""

    tenant_id: str
    email: str | None = None
    external_id: str | None = None
    club_id: str | None = None


_UNSUBSCRIBED_AT = {
    Channel.EMAIL: Customer.email_unsubscribed_at,
    Channel.SMS: Customer.sms_unsubscribed_at,
}


async def owned_customer(
    conn: AsyncConnection, tenants: Collection[str], customer_id: str
) -> CustomerRow | None:
    """The customer with this id if it belongs to one of `tenants`."""
    row = (
        (
            await conn.execute(
                select(Customer.__table__).where(Customer.id == customer_id, Customer.tenant_id.in_(tenants))
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else CustomerRow.of(row)


async def customer_by_external_id(
    conn: AsyncConnection, tenant_id: str, external_id: str
) -> CustomerRow | None:
    row = (
        (
            await conn.execute(
                select(Customer.__table__).where(
                    Customer.tenant_id == tenant_id, Customer.external_id == external_id
                )
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else CustomerRow.of(row)


async def page_customers(conn: AsyncConnection, f: CustomerFilter, window: Window) -> Slice[CustomerRow]:
    conditions: list[ColumnElement[bool]] = [Customer.tenant_id == f.tenant_id]
    if f.email is not None:
        conditions.append(Customer.email == f.email)
    if f.external_id is not None:
        conditions.append(Customer.external_id == f.external_id)
    if f.club_id is not None:
        conditions.append(Customer.club_id == f.club_id)
    return await newest_first(conn, Customer.__table__, and_(*conditions), window, CustomerRow.of)


async def customer_ids_of_tenant(conn: AsyncConnection, tenant_id: str, ids: Sequence[str]) -> set[str]:
    """Which of `ids` are customers of the tenant."""
    wanted = bindparam("ids", list(ids), type_=ARRAY(String))
    result = await conn.execute(
        select(Customer.id).where(Customer.tenant_id == tenant_id, Customer.id == any_(wanted))
    )
    return set(result.scalars())


async def unsubscribe(
    conn: AsyncConnection, tenant_id: str, customer_id: str, channels: Sequence[Channel]
) -> None:
    """Unsubscribe a customer from channels; an earlier unsubscribe keeps its time."""
    now = datetime.now(UTC)
    values = {_UNSUBSCRIBED_AT[ch].key: func.coalesce(_UNSUBSCRIBED_AT[ch], now) for ch in channels}
    await conn.execute(
        update(Customer)
        .where(Customer.id == customer_id, Customer.tenant_id == tenant_id)
        .values(**values, updated_at=func.now())
    )
