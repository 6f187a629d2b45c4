"""Driver connections for the polled reads, without SQLAlchemy's pool in the way (docs/read-path.md).

`GET /campaigns/:id` is one prepared statement (db.hot_reads). Lent by SQLAlchemy's async pool, its
connection cost a greenlet hop, a checkout with its event hooks and an `execution_options` call to
switch to autocommit: about a seventh of the route's CPU, measured by `bench.api_bench`. A psycopg
pool lends a driver connection already in autocommit, so the statement is the whole cost.

The pool is fixed-size: a connection made per burst and closed after it (SQLAlchemy's overflow)
costs Postgres a fork and an authentication, more than the reads it served. Requests beyond the
pool wait in its queue, which on a box of this size is where they would wait for a core anyway.

Connections are never pinged before they are lent. A connection found dead (the database restarted)
fails its statement; the read is then asked once more on a fresh connection, after the pool has
checked its idle ones, so a restart costs no request an error. A read is one statement, so asking
it twice is safe.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from db.engine import SESSION_OPTIONS, DbTimeouts

T = TypeVar("T")
Driver = psycopg.AsyncConnection[Any]


def _conninfo(url: str) -> str:
    """A libpq URL from the SQLAlchemy spelling the settings may use (`postgresql+psycopg://`)."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith("postgres") else url


class _DeadConnection(Exception):
    """The lent connection was found dead (the database restarted): the read may be asked again."""

    def __init__(self, error: psycopg.OperationalError) -> None:
        super().__init__(str(error))
        self.error = error


class ReadPool:
    """A fixed number of read-only, autocommit psycopg connections for one process."""

    def __init__(
        self, url: str, size: int, timeouts: DbTimeouts | None = None, *, name: str = "reads"
    ) -> None:
        options = f"{SESSION_OPTIONS} -c default_transaction_read_only=on"
        if timeouts is not None:
            options = f"{timeouts.options()} {options}"
        self._pool: AsyncConnectionPool[Driver] = AsyncConnectionPool(
            _conninfo(url),
            min_size=size,
            max_size=size,
            open=False,
            name=name,
            kwargs={"autocommit": True, "options": options},
        )
        # Requests beyond the pool queue here, not in the pool: its waiting (a timed wait per
        # waiter) cost more CPU than the read itself once 50 clients shared 10 connections.
        self._turns = asyncio.Semaphore(size)

    async def open(self) -> None:
        """Start connecting (in the background: the first reads wait for their connection)."""
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    async def run(self, read: Callable[[Driver], Awaitable[T]]) -> T:
        """`read` on a lent connection; asked once more on a fresh one if the first was dead."""
        async with self._turns:
            try:
                return await self._lent(read)
            except _DeadConnection:
                # The others made before a restart are found by the check, so the retry (and the
                # next requests) get live ones.
                await self._pool.check()
            try:
                return await self._lent(read)
            except _DeadConnection as dead:
                raise dead.error from None  # dead twice: the database is down, say so as it did

    async def _lent(self, read: Callable[[Driver], Awaitable[T]]) -> T:
        """`read` on one connection, given back after. getconn/putconn rather than `connection()`:
        its exit also closes a transaction, which an autocommit connection never has, and that was
        a tenth of the lending's cost."""
        conn = await self._pool.getconn()
        try:
            return await read(conn)
        except psycopg.OperationalError as error:
            if conn.broken or conn.closed:
                raise _DeadConnection(error) from error
            raise  # a timeout or a cancel: the database answered, asking again adds load
        finally:
            await self._pool.putconn(conn)  # a broken connection is dropped, not kept
