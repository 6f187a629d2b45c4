"""Templates of a tenant: reading, creating, relabelling and listing them, every record a typed
`TemplateRow`. Content changes are versions and live in db.template_versions."""

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import Channel
from core.ids import new_id
from db.models import Template
from db.pages import Slice, Window, newest_first
from db.rows import row_of


@dataclass(frozen=True)
class TemplateRow:
    """One stored template, every column of `templates` (the current version's content)."""

    id: str
    tenant_id: str
    club_id: str | None
    name: str
    channel: str
    subject: str | None
    html: str | None
    text: str | None
    body: str | None
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: RowMapping) -> "TemplateRow":
        return row_of(cls, row)


@dataclass(frozen=True)
class TemplateFilter:
    tenant_id: str
    club_id: str | None = None
    channel: Channel | None = None


async def owned_template(
    conn: AsyncConnection, tenants: Collection[str], template_id: str, *, for_update: bool = False
) -> TemplateRow | None:
    """The template with this id if it belongs to one of `tenants`; `for_update` locks it (an
    edit writes its next version from what it read)."""
    query = select(Template.__table__).where(Template.id == template_id, Template.tenant_id.in_(tenants))
    row = (await conn.execute(query.with_for_update() if for_update else query)).mappings().first()
    return None if row is None else TemplateRow.of(row)


async def template_channel(conn: AsyncConnection, tenant_id: str, template_id: str) -> str | None:
    """The channel of the tenant's template, None when the tenant has no such template."""
    return (
        await conn.execute(
            select(Template.channel).where(Template.id == template_id, Template.tenant_id == tenant_id)
        )
    ).scalar_one_or_none()


async def insert_template(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    club_id: str | None,
    name: str,
    channel: Channel,
    content: Mapping[str, str | None],
) -> str:
    """A new template at version 1 with `content` (subject, html, text, body: those of its
    channel), its id returned; the caller records that version's content."""
    template_id = new_id("template")
    await conn.execute(
        insert(Template).values(
            id=template_id,
            tenant_id=tenant_id,
            club_id=club_id,
            name=name,
            channel=channel.value,
            **{field: content.get(field) for field in ("subject", "html", "text", "body")},
        )
    )
    return template_id


async def relabel(conn: AsyncConnection, template_id: str, labels: Mapping[str, Any]) -> None:
    """Change `name` and/or `club_id`: labels, not content, so no new version."""
    values = {name: labels[name] for name in ("name", "club_id") if name in labels}
    await conn.execute(
        update(Template).where(Template.id == template_id).values(**values, updated_at=func.now())
    )


async def page_templates(conn: AsyncConnection, f: TemplateFilter, window: Window) -> Slice[TemplateRow]:
    conditions: list[ColumnElement[bool]] = [Template.tenant_id == f.tenant_id]
    if f.club_id is not None:
        conditions.append(Template.club_id == f.club_id)
    if f.channel is not None:
        conditions.append(Template.channel == f.channel.value)
    return await newest_first(conn, Template.__table__, and_(*conditions), window, TemplateRow.of)
