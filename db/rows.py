"""Typed rows from result rows: a repository's dataclass built from the columns it names.

A row class lists the columns its readers rely on; a table may hold more (a column added for
another feature), and those are left out here instead of breaking every reader of the table.
"""

from dataclasses import fields
from typing import TypeVar

from sqlalchemy import RowMapping

R = TypeVar("R")


def row_of(cls: type[R], row: RowMapping) -> R:
    """`cls` (a dataclass) with each of its fields read from the column of the same name."""
    return cls(**{f.name: row[f.name] for f in fields(cls)})  # type: ignore[arg-type]
