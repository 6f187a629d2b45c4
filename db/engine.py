"""Database URLs, the embedded Postgres for development/tests, and the async engine."""

import fcntl
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core.settings import Settings


def sqlalchemy_url(url: str) -> str:
    """Accept plain `postgresql://` URLs (as pgserver and docker give them) and pick psycopg 3."""
    for prefix in (
        "postgresql+psycopg://",
        "postgresql+asyncpg://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]}")


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or attach to) a pgserver PostgreSQL in `data_dir`; returns its URL."""
    import pgserver  # local import: only development and tests use it

    data_dir.mkdir(parents=True, exist_ok=True)
    # Run as root, pgserver creates a `pgserver` system user on first use (`useradd`) and hands it
    # the data directory. Two processes starting at once on a machine without that user (the
    # test suite's two xdist workers) both created it: one chowned its directory to a uid that
    # was gone a moment later and initdb failed. One start at a time per machine.
    with open(Path(tempfile.gettempdir()) / "campaigns-pgserver.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        server = pgserver.get_server(str(data_dir), cleanup_mode=None)  # type: ignore[attr-defined]
    uri: str = server.get_uri()
    return uri


def resolve_database_url(settings: Settings) -> str:
    """`CAMPAIGNS_DATABASE_URL`, or the embedded Postgres under `.devstack/pg` when unset."""
    if settings.database_url:
        return settings.database_url
    data_dir = Path(os.environ.get("CAMPAIGNS_EMBEDDED_PG_DIR", ".devstack/pg")).resolve()
    return start_embedded_postgres(data_dir)


@dataclass(frozen=True)
class DbTimeouts:
    """`statement_timeout` and `lock_timeout` of every connection of an engine, milliseconds
    (0: none). Set at connect time, so no statement, however it is issued, escapes them; a
    statement that knows it is long may raise its own with `SET LOCAL` in its transaction."""

    statement_ms: int = 0
    lock_ms: int = 0

    def options(self) -> str:
        """The libpq `options` startup parameter that sets them."""
        return f"-c statement_timeout={self.statement_ms} -c lock_timeout={self.lock_ms}"


# Every session of the service runs without JIT compilation. Postgres compiles a statement whose
# estimated cost passes `jit_above_cost` (100,000), and its per-recipient reads pass it on a large
# audience: a send page's recipients (five index probes per row for consent and suppression) cost
# ~126,000 for 7,000 rows once the tables are analyzed, and the compiling took 68 ms of a 205 ms
# read (EXPLAIN ANALYZE on 100,000 recipients; 50 ms without it). No statement of this service
# runs long enough to win that back: they read what one page, one chunk or one request needs.
SESSION_OPTIONS = "-c jit=off"


def api_timeouts(settings: Settings) -> DbTimeouts:
    return DbTimeouts(settings.db_statement_timeout_ms, settings.db_lock_timeout_ms)


def worker_timeouts(settings: Settings) -> DbTimeouts:
    return DbTimeouts(settings.worker_db_statement_timeout_ms, settings.worker_db_lock_timeout_ms)


# SQLSTATEs of a statement cut by the timeouts above: query_canceled (statement_timeout, also a
# cancel request) and lock_not_available (lock_timeout, NOWAIT).
TIMEOUT_SQLSTATES = frozenset({"57014", "55P03"})


def is_timeout(error: BaseException) -> bool:
    """Whether `error` (a driver error, or SQLAlchemy's wrapper of one) is a statement or lock
    timeout: the database is busy, not the request wrong."""
    original = getattr(error, "orig", None) or error
    return getattr(original, "sqlstate", None) in TIMEOUT_SQLSTATES


def make_engine(
    url: str,
    pool_size: int = 10,
    timeouts: DbTimeouts | None = None,
    *,
    pre_ping: bool = True,
    read_only: bool = False,
    max_overflow: int | None = None,
) -> AsyncEngine:
    """The async engine. `pre_ping=False` (the API) spares every request a round trip: a connection
    found dead fails its statement instead, and SQLAlchemy then discards every connection of the
    pool made before that failure, so the next requests reconnect: after a database restart, the
    request that met the dead connection fails and the ones after it do not.

    `read_only=True` (the API's reads): every transaction of its connections is READ ONLY
    (`default_transaction_read_only`, set when the connection opens, so no request pays for it):
    a read can never write, and Postgres skips a writer's bookkeeping.

    `max_overflow` (default: `pool_size`) connections are opened beyond the pool under load and
    closed as they come back; the API's read engine has none (docs/read-path.md)."""
    options = SESSION_OPTIONS if timeouts is None else f"{SESSION_OPTIONS} {timeouts.options()}"
    if read_only:
        options = (options + " -c default_transaction_read_only=on").strip()
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_pre_ping=pre_ping,
        connect_args={"options": options},
        # An error's text must not carry the statement's values (customer data, secrets) into logs.
        hide_parameters=True,
    )
