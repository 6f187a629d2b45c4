"""Inbound provider webhooks a tenant registered (README "Provider webhooks"), as typed rows.

`credentials` is the sealed JSON of what verifies the provider's requests (core.secrets): the
API never returns it; only the receiving route unseals it to check a signature.
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, DateTime, MetaData, RowMapping, String, Table, Text, and_, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from core.ids import new_id
from db.pages import Slice, Window, newest_first
from db.rows import row_of

_metadata = MetaData()
provider_webhooks = Table(
    "provider_webhooks",
    _metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(100), nullable=False),
    Column("provider", String(20), nullable=False),
    Column("credentials", Text, nullable=False),
    Column("created_by", String(200)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class ProviderWebhookRow:
    """One registration; `credentials` stays sealed here."""

    id: str
    tenant_id: str
    provider: str
    credentials: str
    created_by: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: RowMapping) -> "ProviderWebhookRow":
        return row_of(cls, row)


async def create_provider_webhook(
    conn: AsyncConnection, *, tenant_id: str, provider: str, sealed: str, created_by: str
) -> ProviderWebhookRow:
    row = (
        (
            await conn.execute(
                insert(provider_webhooks)
                .values(
                    id=new_id("pwebhook"),
                    tenant_id=tenant_id,
                    provider=provider,
                    credentials=sealed,
                    created_by=created_by,
                    created_at=datetime.now().astimezone(),
                )
                .returning(*provider_webhooks.c)
            )
        )
        .mappings()
        .one()
    )
    return ProviderWebhookRow.of(row)


async def owned_provider_webhook(
    conn: AsyncConnection, tenants: Collection[str], webhook_id: str
) -> ProviderWebhookRow | None:
    """The registration if it belongs to one of `tenants` (else None, like a missing one)."""
    where = and_(provider_webhooks.c.id == webhook_id, provider_webhooks.c.tenant_id.in_(tenants))
    row = (await conn.execute(select(provider_webhooks).where(where))).mappings().first()
    return None if row is None else ProviderWebhookRow.of(row)


async def provider_webhook_for(
    conn: AsyncConnection, provider: str, webhook_id: str
) -> ProviderWebhookRow | None:
    """The registration a provider's request names by its URL (no caller identity: the signature
    checked against these credentials is the authentication)."""
    where = and_(provider_webhooks.c.id == webhook_id, provider_webhooks.c.provider == provider)
    row = (await conn.execute(select(provider_webhooks).where(where))).mappings().first()
    return None if row is None else ProviderWebhookRow.of(row)


async def page_provider_webhooks(
    conn: AsyncConnection, tenant_id: str, window: Window
) -> Slice[ProviderWebhookRow]:
    where = provider_webhooks.c.tenant_id == tenant_id
    return await newest_first(conn, provider_webhooks, where, window, ProviderWebhookRow.of)


async def delete_provider_webhook(conn: AsyncConnection, webhook_id: str) -> None:
    await conn.execute(delete(provider_webhooks).where(provider_webhooks.c.id == webhook_id))
