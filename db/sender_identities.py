"""A tenant's sender identities (docs/tenants-and-providers.md): who its messages come from, the
accounts they go through, and the email domain's DKIM key (private half sealed in `dkim_key`).

`sending_identity` is the send path's one read per page: the campaign's identity, else the
tenant's default one. Functions take the caller's connection and never commit.
"""

from collections.abc import Collection
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import column, table, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from db.pages import Slice, Window, newest_first


@dataclass(frozen=True)
class IdentityRow:
    id: str
    tenant_id: str
    club_id: str | None
    name: str
    from_name: str | None
    from_address: str | None
    reply_to: str | None
    sms_sender: str | None
    email_account_id: str | None
    sms_account_id: str | None
    dkim_selector: str | None
    dkim_key: str | None  # sealed PEM
    dkim_public: str | None  # base64 DER, the TXT record's p=
    verified_at: datetime | None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def domain(self) -> str | None:
        return self.from_address.rsplit("@", 1)[1].lower() if self.from_address else None


_NAMES = [f.name for f in fields(IdentityRow)]
_COLUMNS = ", ".join(_NAMES)
_TABLE = table("sender_identities", *(column(n) for n in _NAMES))
_WRITABLE = [n for n in _NAMES if n not in ("id", "tenant_id", "created_at", "updated_at")]
_INSERTED = ["id", "tenant_id", *_WRITABLE]
# The statements are built once, from the row's own field names (no input reaches their text).
_INSERT_SQL = (
    f"INSERT INTO sender_identities ({', '.join(_INSERTED)})"
    f" VALUES ({', '.join(':' + n for n in _INSERTED)}) RETURNING {_COLUMNS}"
)
_UPDATE_SQL = (
    f"UPDATE sender_identities SET {', '.join(f'{n} = :{n}' for n in _WRITABLE)}, updated_at = now()"
    f" WHERE tenant_id = :tenant_id AND id = :id RETURNING {_COLUMNS}"
)

_SENDING_SQL = (
    f"SELECT {', '.join('si.' + n for n in _NAMES)} FROM campaigns c"
    " LEFT JOIN tenant_settings ts ON ts.tenant_id = c.tenant_id"
    " JOIN sender_identities si ON si.tenant_id = c.tenant_id"
    " AND si.id = COALESCE(c.sender_identity_id, ts.settings->>'defaultSenderIdentityId')"
    " WHERE c.id = :c AND c.tenant_id = :t"
)


def _row(row: Row[Any]) -> IdentityRow:
    return IdentityRow(**row._mapping)


async def insert_identity(conn: AsyncConnection, identity: IdentityRow) -> IdentityRow:
    row = (await conn.execute(text(_INSERT_SQL), {n: getattr(identity, n) for n in _INSERTED})).one()
    return _row(row)


async def get_identity(
    conn: AsyncConnection, tenants: Collection[str], identity_id: str
) -> IdentityRow | None:
    """The identity of one of `tenants` (None: no such identity there)."""
    row = (
        await conn.execute(
            text(f"SELECT {_COLUMNS} FROM sender_identities WHERE tenant_id = ANY(:t) AND id = :id"),
            {"t": list(tenants), "id": identity_id},
        )
    ).first()
    return None if row is None else _row(row)


async def list_identities(
    conn: AsyncConnection, tenant_id: str, club_id: str | None, window: Window
) -> Slice[IdentityRow]:
    """The tenant's identities (of one club when `club_id` is given), newest first."""
    where = _TABLE.c.tenant_id == tenant_id
    if club_id is not None:
        where = where & (_TABLE.c.club_id == club_id)
    return await newest_first(conn, _TABLE, where, window, lambda r: IdentityRow(**r))


async def update_identity(conn: AsyncConnection, identity: IdentityRow) -> IdentityRow | None:
    """Write every writable column of `identity` (None: it is gone)."""
    row = (await conn.execute(text(_UPDATE_SQL), {n: getattr(identity, n) for n in _INSERTED})).first()
    return None if row is None else _row(row)


async def delete_identity(conn: AsyncConnection, tenant_id: str, identity_id: str) -> bool:
    result = await conn.execute(
        text("DELETE FROM sender_identities WHERE tenant_id = :t AND id = :id RETURNING id"),
        {"t": tenant_id, "id": identity_id},
    )
    return result.first() is not None


async def identity_in_use(conn: AsyncConnection, tenant_id: str, identity_id: str) -> bool:
    """Whether a campaign not yet over, or the tenant's settings, name the identity."""
    row = (
        await conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM campaigns WHERE tenant_id = :t AND sender_identity_id = :id"
                " AND status NOT IN ('COMPLETED', 'CANCELLED'))"
                " OR EXISTS (SELECT 1 FROM tenant_settings WHERE tenant_id = :t"
                " AND settings->>'defaultSenderIdentityId' = :id)"
            ),
            {"t": tenant_id, "id": identity_id},
        )
    ).one()
    return bool(row[0])


async def sending_identity(conn: AsyncConnection, campaign_id: str, tenant_id: str) -> IdentityRow | None:
    """The identity a campaign sends as: its own, else the tenant's default; None: the platform's."""
    row = (
        await conn.execute(
            text(_SENDING_SQL),
            {"c": campaign_id, "t": tenant_id},
        )
    ).first()
    return None if row is None else _row(row)
