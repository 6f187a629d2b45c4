"""Reading Postgres plans in tests: the generic plan a session keeps for a prepared statement, and
which scans of a table it makes (tests/test_ledger_plans.py, tests/test_send_indexes.py)."""

import json
from typing import Any, cast

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def generic_plan(conn: AsyncConnection, name: str, n_params: int) -> dict[str, Any]:
    """The plan `conn`'s session keeps for its prepared statement `name`, read with every argument
    NULL: a statement planned generically runs the same plan for any argument."""
    nulls = ", ".join(["NULL"] * n_params)
    explained = (await conn.execute(text(f"EXPLAIN (FORMAT JSON) EXECUTE {name}({nulls})"))).scalar_one()
    document = explained if isinstance(explained, list) else json.loads(explained)
    return cast(dict[str, Any], document[0]["Plan"])


def scans(plan: dict[str, Any], table: str, _bitmap: bool = False) -> list[tuple[str, str]]:
    """(node type, index or '') of every scan of `table` in a JSON plan: a plain scan reads it with
    no index (''), a bitmap scan through the index scans under it."""
    node = str(plan["Node Type"])
    here = plan.get("Relation Name") == table
    found = []
    if (here and "Scan" in node and node != "Bitmap Heap Scan") or (_bitmap and node == "Bitmap Index Scan"):
        found.append((node, str(plan.get("Index Name", ""))))
    under = (here and node == "Bitmap Heap Scan") or (_bitmap and node in ("BitmapAnd", "BitmapOr"))
    for child in cast(list[dict[str, Any]], plan.get("Plans", [])):
        found += scans(child, table, under)
    return found
