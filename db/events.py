"""Customer events as journeys read them: has a customer done something since a given time?

The events are written where they are routed to triggered campaigns (db.ledger.triggers)."""

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_SEEN = text(
    "SELECT 1 FROM customer_events WHERE tenant_id = :t AND customer_id = :c"
    " AND type = :type AND received_at >= :since LIMIT 1"
)


async def event_seen(
    conn: AsyncConnection, tenant_id: str, customer_id: str, event_type: str, since: datetime
) -> bool:
    """Whether the customer sent an event of this type received at or after `since`."""
    params = {"t": tenant_id, "c": customer_id, "type": event_type, "since": since}
    return (await conn.execute(_SEEN, params)).first() is not None
