"""Provider events already acted on: the idempotency of every provider webhook.

A provider retries an event until it gets a 2xx and may send it twice anyway; the first request
claims (provider, event id) inside the transaction that acts on it, so a replay finds the claim
and changes nothing, and an event whose transaction failed was never claimed.
"""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_CLAIM = text(
    """
    INSERT INTO provider_events (provider, event_id, webhook_id) VALUES (:provider, :event, :webhook)
    ON CONFLICT ON CONSTRAINT pk_provider_events DO NOTHING
    RETURNING event_id
    """
)


async def claim_event(conn: AsyncConnection, provider: str, event_id: str, webhook_id: str) -> bool:
    """True when this is the first time the event arrives (act on it); False for a replay."""
    params = {"provider": provider, "event": event_id[:300], "webhook": webhook_id}
    return (await conn.execute(_CLAIM, params)).first() is not None
