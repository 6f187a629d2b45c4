"""The API's driver pool for the polled reads (db.read_pool, docs/read-path.md) on the real Postgres."""

import asyncio
from typing import Any

import psycopg
import pytest

from db.engine import DbTimeouts
from db.read_pool import Driver, ReadPool


async def backend_pid(conn: Driver) -> int:
    async with conn.cursor() as cursor:
        await cursor.execute("SELECT pg_backend_pid()")
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_read_survives_the_death_of_every_connection_the_pool_holds(database_url: str) -> None:
    """A database restart kills every connection: the read that meets a dead one is asked again
    on a live one, and the pool serves the next reads, without a ping per read."""
    pool = ReadPool(database_url, 3)
    await pool.open()
    try:
        first = {await pool.run(backend_pid) for _ in range(6)}
        with psycopg.connect(database_url, autocommit=True) as admin:
            for pid in first:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await asyncio.sleep(0.2)
        after = [await pool.run(backend_pid) for _ in range(6)]
        assert not set(after) & first, "a read ran on a connection that was killed"
    finally:
        await pool.close()


async def test_reads_cannot_write(database_url: str) -> None:
    pool = ReadPool(database_url, 1)
    await pool.open()

    async def write(conn: Driver) -> None:
        await conn.execute("CREATE TEMPORARY TABLE read_pool_probe (x int)")

    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            await pool.run(write)
    finally:
        await pool.close()


async def test_a_timed_out_read_is_not_asked_again(database_url: str) -> None:
    """A statement the database cut (its timeout) is the database's answer: asking it again would
    double the load on a busy database, so it fails once (the API answers 503)."""
    pool = ReadPool(database_url, 1, DbTimeouts(statement_ms=50))
    await pool.open()
    calls: list[Any] = []

    async def slow(conn: Driver) -> None:
        calls.append(conn)
        await conn.execute("SELECT pg_sleep(1)")

    try:
        with pytest.raises(psycopg.errors.QueryCanceled):
            await pool.run(slow)
        assert len(calls) == 1
        assert await pool.run(backend_pid) > 0  # the connection is still good
    finally:
        await pool.close()


def test_a_service_process_freezes_what_it_imported_and_collects_the_young_less_often() -> None:
    """core.gc_tuning, in a process of its own (it changes the collector of the process it runs in)."""
    import subprocess
    import sys

    probe = (
        "import gc, fastapi, sqlalchemy; from core.gc_tuning import tune_for_service, YOUNG_THRESHOLD;"
        "tune_for_service(); print(gc.get_freeze_count() > 10_000, gc.get_threshold()[0] == YOUNG_THRESHOLD)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]
