"""Database URLs, the embedded Postgres for development/tests, and the async engine."""

import os
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
    server = pgserver.get_server(str(data_dir), cleanup_mode=None)  # type: ignore[attr-defined]
    uri: str = server.get_uri()
    return uri


def resolve_database_url(settings: Settings) -> str:
    """`CAMPAIGNS_DATABASE_URL`, or the embedded Postgres under `.devstack/pg` when unset."""
    if settings.database_url:
        return settings.database_url
    data_dir = Path(os.environ.get("CAMPAIGNS_EMBEDDED_PG_DIR", ".devstack/pg")).resolve()
    return start_embedded_postgres(data_dir)


def make_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )
