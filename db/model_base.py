"""What every table class shares: the declarative base (one metadata for all tables, which the
migrations compare against) and the column types used everywhere."""

from typing import Any

from sqlalchemy import DateTime, Index, String, Text, TextClause, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

TS = DateTime(timezone=True)


class Base(DeclarativeBase):
    pass


def _now() -> Any:
    return text("now()")


def index_where(name: str, where: TextClause, *columns: str, unique: bool = False) -> Index:
    """An index over `columns` of the rows matching `where` only (a partial index)."""
    return Index(name, *columns, unique=unique, postgresql_where=where)


def unique_where(name: str, where: TextClause, *columns: str) -> Index:
    """A unique index over `columns` of the rows matching `where` (a partial unique index)."""
    return index_where(name, where, *columns, unique=True)


class NamedRecord:
    """The leading columns of a tenant's named record that may belong to one of its clubs
    (segments, campaigns): each table that mixes it in gets its own copy, first in its column order."""

    id: Mapped[str] = mapped_column(String(40), primary_key=True, sort_order=-6)
    tenant_id: Mapped[str] = mapped_column(String(100), sort_order=-5)
    club_id: Mapped[str | None] = mapped_column(String(100), sort_order=-4)
    name: Mapped[str] = mapped_column(String(200), sort_order=-3)
    description: Mapped[str | None] = mapped_column(Text, sort_order=-2)
    type: Mapped[str] = mapped_column(String(16), sort_order=-1)
