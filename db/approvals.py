"""Who approved a campaign, on the campaign's row (README "Approvals")."""

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_SET = text("UPDATE campaigns SET approved_by = :by, approved_at = :at, updated_at = now() WHERE id = :c")


async def set_approval(conn: AsyncConnection, campaign_id: str, by: str | None, at: datetime | None) -> None:
    """Record the approval (both None: withdraw it)."""
    await conn.execute(_SET, {"c": campaign_id, "by": by, "at": at})
