"""What the benchmarks read back to measure a run: the database clock and ledger figures that no
API answer gives (when the last message was recorded, how many runs the messages came in).

Tooling only, like db.seed: nothing in the service calls these.
"""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_CLOCK = text("SELECT extract(epoch FROM clock_timestamp())")
_LAST_SENT = text(
    "SELECT extract(epoch FROM max(updated_at)), count(*) FILTER (WHERE updated_at > to_timestamp(:a))"
    " FROM deliveries WHERE campaign_id = :c AND outcome = 'SENT'"
)
_DELIVERIES_AND_RUNS = text("SELECT count(*), count(DISTINCT run_id) FROM deliveries WHERE campaign_id = :c")


async def database_clock(conn: AsyncConnection) -> float:
    """The database's clock (the ledger's timestamps come from it), as epoch seconds."""
    return float((await conn.execute(_CLOCK)).scalar_one())


async def last_sent(conn: AsyncConnection, campaign_id: str, after: float) -> tuple[float, int]:
    """When the campaign's last SENT row was recorded (epoch seconds), and how many were recorded
    after the instant `after` (no SENT row yet: `after` itself, and 0)."""
    row = (await conn.execute(_LAST_SENT, {"c": campaign_id, "a": after})).one()
    return (float(row[0]) if row[0] is not None else after), int(row[1])


async def deliveries_and_runs(conn: AsyncConnection, campaign_id: str) -> tuple[int, int]:
    """How many ledger rows the campaign has, and in how many runs."""
    row = (await conn.execute(_DELIVERIES_AND_RUNS, {"c": campaign_id})).one()
    return int(row[0]), int(row[1])
