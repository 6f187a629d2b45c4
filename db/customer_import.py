"""Bulk customer upsert: one `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE` per chunk.

Used by both `POST /customers` (one row) and `POST /customers/import` (up to 100,000 rows). Rows
are grouped by the set of fields they carry, because a field left out must keep its stored value:
each group updates exactly its own columns. Within a statement rows are sorted by external id, so
two concurrent imports lock rows in the same order instead of deadlocking.
"""

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.ids import new_id

CHUNK_ROWS = 5_000

# Writable columns and the Postgres array type their values travel in.
COLUMNS: dict[str, str] = {
    "email": "varchar[]",
    "phone": "varchar[]",
    "first_name": "varchar[]",
    "last_name": "varchar[]",
    "club_id": "varchar[]",
    "attributes": "jsonb[]",
    "email_opt_in": "boolean[]",
    "sms_opt_in": "boolean[]",
}


@dataclass(frozen=True)
class UpsertCounts:
    created: int
    updated: int

    @property
    def total(self) -> int:
        return self.created + self.updated


async def upsert_customers(
    conn: AsyncConnection, tenant_id: str, rows: Sequence[Mapping[str, Any]]
) -> UpsertCounts:
    """Upsert `rows` (snake_case field -> value, `external_id` required) into one tenant.

    External ids must be unique within `rows`: Postgres refuses to update one row twice in a
    statement, and the caller is the one that can name the offending input.
    """
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(sorted(c for c in row if c in COLUMNS))].append(row)
    created = updated = 0
    for columns, members in groups.items():
        members.sort(key=lambda r: str(r["external_id"]))
        statement = _statement(columns)
        for start in range(0, len(members), CHUNK_ROWS):
            chunk = members[start : start + CHUNK_ROWS]
            params = _params(tenant_id, columns, chunk)
            result = (await conn.execute(statement, params)).one()
            created += int(result.created)
            updated += int(result.total) - int(result.created)
    return UpsertCounts(created=created, updated=updated)


def _statement(columns: tuple[str, ...]) -> Any:
    src_columns = ["id", "external_id", *columns]
    arrays = ", ".join(
        [
            "CAST(:id AS varchar[])",
            "CAST(:external_id AS varchar[])",
            *(f"CAST(:{c} AS {COLUMNS[c]})" for c in columns),
        ]
    )
    insert_columns = ", ".join(["id", "tenant_id", "external_id", *columns])
    select_columns = ", ".join(["src.id", ":tenant_id", "src.external_id", *(f"src.{c}" for c in columns)])
    assignments = [f"{c} = EXCLUDED.{c}" for c in columns]
    if columns:
        old = ", ".join(f"customers.{c}" for c in columns)
        new = ", ".join(f"EXCLUDED.{c}" for c in columns)
        # updatedAt moves only when something actually changed (a re-import is not an update).
        assignments.append(
            f"updated_at = CASE WHEN ROW({old}) IS DISTINCT FROM ROW({new}) "
            "THEN now() ELSE customers.updated_at END"
        )
    else:
        assignments.append("updated_at = customers.updated_at")
    return text(
        f"""
        WITH src AS (
            SELECT * FROM unnest({arrays}) AS s({", ".join(src_columns)})
        ), up AS (
            INSERT INTO customers ({insert_columns})
            SELECT {select_columns} FROM src
            ON CONFLICT (tenant_id, external_id) DO UPDATE SET {", ".join(assignments)}
            RETURNING (xmax = 0) AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted) AS created, count(*) AS total FROM up
        """
    )


def _params(tenant_id: str, columns: Iterable[str], chunk: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "tenant_id": tenant_id,
        "id": [new_id("customer") for _ in chunk],
        "external_id": [r["external_id"] for r in chunk],
    }
    for column in columns:
        if column == "attributes":
            params[column] = [json.dumps(r[column], separators=(",", ":")) for r in chunk]
        else:
            params[column] = [r[column] for r in chunk]
    return params
