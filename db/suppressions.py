"""The tenant suppression list: adding, finding, listing and removing entries, every entry a typed
`SuppressionRow`. Addresses arrive normalised (api.schemas.suppressions), as they are stored."""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, RowMapping, and_, delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import Channel
from core.ids import new_id
from db.models import Suppression
from db.pages import Slice, Window, newest_first
from db.rows import row_of


@dataclass(frozen=True)
class SuppressionRow:
    """One entry of the list, every column of `suppressions`."""

    id: str
    tenant_id: str
    channel: str
    address: str
    note: str | None
    created_by: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: RowMapping) -> "SuppressionRow":
        return row_of(cls, row)


@dataclass(frozen=True)
class SuppressionFilter:
    """A listing's conditions; `address` (normalised) only together with `channel`."""

    tenant_id: str
    channel: Channel | None = None
    address: str | None = None


def _entry(tenant_id: str, channel: Channel, address: str) -> ColumnElement[bool]:
    """The entry of a normalised address."""
    return and_(
        Suppression.tenant_id == tenant_id,
        Suppression.channel == channel.value,
        Suppression.address == address,
    )


async def add_suppression(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    channel: Channel,
    address: str,
    note: str | None,
    created_by: str,
) -> tuple[SuppressionRow, bool]:
    """The entry of the address and whether this call created it (False: it was listed already)."""
    inserted = (
        await conn.execute(
            insert(Suppression)
            .values(
                id=new_id("suppression"),
                tenant_id=tenant_id,
                channel=channel.value,
                address=address,
                note=note,
                created_by=created_by,
            )
            .on_conflict_do_nothing(constraint="uq_suppressions_tenant_channel_address")
            .returning(Suppression.id)
        )
    ).scalar_one_or_none()
    where = _entry(tenant_id, channel, address)
    row = (await conn.execute(select(Suppression.__table__).where(where))).mappings().one()
    return SuppressionRow.of(row), inserted is not None


async def owned_suppression(
    conn: AsyncConnection, tenants: Collection[str], suppression_id: str
) -> SuppressionRow | None:
    """The entry with this id if it belongs to one of `tenants`."""
    row = (
        (
            await conn.execute(
                select(Suppression.__table__).where(
                    Suppression.id == suppression_id, Suppression.tenant_id.in_(tenants)
                )
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else SuppressionRow.of(row)


async def page_suppressions(
    conn: AsyncConnection, f: SuppressionFilter, window: Window
) -> Slice[SuppressionRow]:
    conditions: list[ColumnElement[bool]] = [Suppression.tenant_id == f.tenant_id]
    if f.channel is not None:
        conditions.append(Suppression.channel == f.channel.value)
    if f.address is not None:
        conditions.append(Suppression.address == f.address)
    return await newest_first(conn, Suppression.__table__, and_(*conditions), window, SuppressionRow.of)


async def remove_suppression(conn: AsyncConnection, suppression_id: str) -> None:
    await conn.execute(delete(Suppression).where(Suppression.id == suppression_id))


async def remove_address(conn: AsyncConnection, tenant_id: str, channel: Channel, address: str) -> bool:
    """Take a normalised address off the list; False when it was not on it."""
    removed = (
        await conn.execute(
            delete(Suppression).where(_entry(tenant_id, channel, address)).returning(Suppression.id)
        )
    ).scalar_one_or_none()
    return removed is not None


# Entries the service adds on a provider's word (README "Provider webhooks"): a complaint, an SMS
# STOP, a hard bounce or a permanent SMS failure. `reason` is what a send records when it skips
# the address; an entry already on the list (an operator's included) is left as it is.
_ADD_WITH_REASON = text(
    """
    INSERT INTO suppressions (id, tenant_id, channel, address, note, created_by, reason)
    VALUES (:id, :tenant, :channel, :address, :note, :by, :reason)
    ON CONFLICT ON CONSTRAINT uq_suppressions_tenant_channel_address DO NOTHING
    RETURNING id
    """
)
_REMOVE_WITH_REASON = text(
    """
    DELETE FROM suppressions
    WHERE tenant_id = :tenant AND channel = :channel AND address = :address AND reason = :reason
    RETURNING id
    """
)


async def suppress_with_reason(
    conn: AsyncConnection, *, tenant_id: str, channel: Channel, address: str, reason: str, note: str, by: str
) -> bool:
    """Put a normalised address on the list with the skip reason; False when it was listed already."""
    params = {
        "id": new_id("suppression"),
        "tenant": tenant_id,
        "channel": channel.value,
        "address": address,
        "note": note[:1000],
        "by": by,
        "reason": reason,
    }
    return (await conn.execute(_ADD_WITH_REASON, params)).first() is not None


async def unsuppress_reason(
    conn: AsyncConnection, *, tenant_id: str, channel: Channel, address: str, reason: str
) -> bool:
    """Take the address off the list only if it is there for `reason` (an SMS START undoes a STOP,
    never an operator's entry); False when no such entry was there."""
    params = {"tenant": tenant_id, "channel": channel.value, "address": address, "reason": reason}
    return (await conn.execute(_REMOVE_WITH_REASON, params)).first() is not None
