"""A tenant's provider accounts: SMTP relays and SMS providers (docs/tenants-and-providers.md).

`config` holds what may be shown (host, port, username, base URL...), `secret` the credential
sealed with core.secrets; neither is ever read across tenants. Functions take the caller's
connection and never commit.
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import column, table, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import bindparam

from db.pages import Slice, Window, newest_first


@dataclass(frozen=True)
class AccountRow:
    id: str
    tenant_id: str
    kind: str  # SMTP or SMS
    name: str
    config: dict[str, Any]
    secret: str | None  # sealed
    created_at: datetime
    updated_at: datetime


_COLUMNS = "id, tenant_id, kind, name, config, secret, created_at, updated_at"
_TABLE = table("provider_accounts", *(column(n) for n in _COLUMNS.split(", ")))


def _row(row: Row[Any]) -> AccountRow:
    return AccountRow(**row._mapping)


_INSERT = text(
    f"INSERT INTO provider_accounts (id, tenant_id, kind, name, config, secret)"
    f" VALUES (:id, :t, :kind, :name, :config, :secret) RETURNING {_COLUMNS}"
).bindparams(bindparam("config", type_=JSONB))


async def insert_account(
    conn: AsyncConnection,
    *,
    id_: str,
    tenant_id: str,
    kind: str,
    name: str,
    config: dict[str, Any],
    secret: str | None,
) -> AccountRow:
    row = (
        await conn.execute(
            _INSERT,
            {"id": id_, "t": tenant_id, "kind": kind, "name": name, "config": config, "secret": secret},
        )
    ).one()
    return _row(row)


async def get_account(conn: AsyncConnection, tenants: Collection[str], account_id: str) -> AccountRow | None:
    """The account of one of `tenants` (None: no such account there)."""
    row = (
        await conn.execute(
            text(f"SELECT {_COLUMNS} FROM provider_accounts WHERE tenant_id = ANY(:t) AND id = :id"),
            {"t": list(tenants), "id": account_id},
        )
    ).first()
    return None if row is None else _row(row)


async def list_accounts(
    conn: AsyncConnection, tenant_id: str, kind: str | None, window: Window
) -> Slice[AccountRow]:
    """The tenant's accounts (of one kind when `kind` is given), newest first."""
    where = _TABLE.c.tenant_id == tenant_id
    if kind is not None:
        where = where & (_TABLE.c.kind == kind)
    return await newest_first(conn, _TABLE, where, window, lambda r: AccountRow(**r))


_UPDATE = text(
    f"UPDATE provider_accounts SET name = :name, config = :config, secret = :secret, updated_at = now()"
    f" WHERE tenant_id = :t AND id = :id RETURNING {_COLUMNS}"
).bindparams(bindparam("config", type_=JSONB))


async def update_account(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    account_id: str,
    name: str,
    config: dict[str, Any],
    secret: str | None,
) -> AccountRow | None:
    row = (
        await conn.execute(
            _UPDATE, {"t": tenant_id, "id": account_id, "name": name, "config": config, "secret": secret}
        )
    ).first()
    return None if row is None else _row(row)


async def delete_account(conn: AsyncConnection, tenant_id: str, account_id: str) -> bool:
    result = await conn.execute(
        text("DELETE FROM provider_accounts WHERE tenant_id = :t AND id = :id RETURNING id"),
        {"t": tenant_id, "id": account_id},
    )
    return result.first() is not None


async def account_in_use(conn: AsyncConnection, tenant_id: str, account_id: str) -> bool:
    """Whether an identity or the tenant's settings name the account (it cannot be deleted then)."""
    row = (
        await conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM sender_identities WHERE tenant_id = :t"
                " AND (email_account_id = :id OR sms_account_id = :id))"
                " OR EXISTS (SELECT 1 FROM tenant_settings WHERE tenant_id = :t"
                " AND (settings->>'defaultEmailAccountId' = :id OR settings->>'defaultSmsAccountId' = :id))"
            ),
            {"t": tenant_id, "id": account_id},
        )
    ).one()
    return bool(row[0])
