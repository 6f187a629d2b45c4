"""The database half of `/health`: one round trip that proves a connection works."""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_PING = text("SELECT 1")


async def ping(conn: AsyncConnection) -> None:
    """Raise if the database does not answer a trivial query on this connection."""
    await conn.execute(_PING)
