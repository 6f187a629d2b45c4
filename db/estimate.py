"""What the estimate before sending reads: the audience's recipients and their frequency holds.

Read-only: an estimate never writes a hold or a ledger row (README "Sending policies").
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from db.audience import RECIPIENT_COLUMNS

_RECIPIENTS = text(
    f"SELECT c.id, {RECIPIENT_COLUMNS} FROM customers c"
    " WHERE c.id = ANY(CAST(:ids AS text[])) AND c.tenant_id = :t ORDER BY c.id"
)


async def recipients(conn: AsyncConnection, tenant_id: str, ids: Sequence[str]) -> Sequence[RowMapping]:
    """`id` and db.audience.RECIPIENT_COLUMNS of the tenant's customers among `ids`, by id."""
    return (await conn.execute(_RECIPIENTS, {"ids": list(ids), "t": tenant_id})).mappings().all()


_HOLDS = text(
    """
    SELECT customer_id, count(*), min(held_at) FROM frequency_holds
    WHERE tenant_id = :t AND channel = :ch AND customer_id = ANY(CAST(:ids AS text[]))
      AND held_at > CAST(:at AS timestamptz) - CAST(:window AS interval)
    GROUP BY customer_id
    """
)


async def messages_in_window(
    conn: AsyncConnection, tenant_id: str, channel: str, ids: Sequence[str], window: timedelta, at: datetime
) -> dict[str, tuple[int, datetime]]:
    """How many messages each person got on the channel in the rolling window ending `at` (the
    cap's count), and the oldest of them."""
    seconds = f"{int(window.total_seconds())} seconds"
    params = {"t": tenant_id, "ch": channel, "ids": list(ids), "window": seconds, "at": at}
    return {r[0]: (int(r[1]), r[2]) for r in await conn.execute(_HOLDS, params)}
