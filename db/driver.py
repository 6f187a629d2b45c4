"""The psycopg connection under a SQLAlchemy one, for the statements of the hottest paths.

SQLAlchemy's execution layer (compiling an expanding IN, building result metadata, wrapping rows)
cost more per request than the statement's own client side (docs/read-path.md). A statement run
on the driver is still one function in `db/`, with typed rows out; it runs in the caller's
transaction, or in autocommit when the caller's connection is.
"""

from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncConnection


async def driver_of(conn: AsyncConnection) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection under `conn`, in `conn`'s transaction (or autocommit), for the
    statements of the hottest paths (the reads of issue 19, the ledger's step): SQLAlchemy's
    execution layer (compiling an expanding IN, building result metadata) cost more than the
    statement's own client side."""
    driver = (await conn.get_raw_connection()).driver_connection
    if not isinstance(driver, psycopg.AsyncConnection):
        raise TypeError("the hot paths need the psycopg driver")
    return driver
