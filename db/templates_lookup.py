"""Which channel each of a tenant's templates is for (references checked at the API edge)."""

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def template_channels(
    conn: AsyncConnection, tenant_id: str, template_ids: Sequence[str]
) -> dict[str, str]:
    """`{template id: channel}` for the ids that are the tenant's templates."""
    if not template_ids:
        return {}
    rows = await conn.execute(
        text("SELECT id, channel FROM templates WHERE tenant_id = :t AND id = ANY(CAST(:ids AS text[]))"),
        {"t": tenant_id, "ids": list(template_ids)},
    )
    return {r[0]: r[1] for r in rows}
