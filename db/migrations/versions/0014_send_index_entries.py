"""Two indexes leave out the rows a send writes that no reader looks for (issue 14)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 03:00:00

Every message a send records writes a claim (a PENDING `deliveries` row without a provider message
id) and a SENT interaction. Two indexes took an entry for each that nobody ever looks up:

- `ix_deliveries_provider_message` held the claim's NULL id: a provider's webhook looks a message
  up by the id the provider gave it, never by NULL, so only rows with an id are indexed now.
- `ix_interactions_delivery` held every SENT interaction: its readers look for a message's clicks
  (the link-burst rule) and its delivered, opened and clicked events (the A/B counts), never for its
  SENT row, so SENT rows are left out, and those readers say `type <> 'SENT'`.

`bench.ledger_bench --messages 40000`: 2,650 -> 2,466 bytes of WAL per message
(docs/performance-log.md, "2026-12-06 (2)"). Built concurrently, like 0013, so writes go on while a
large table is indexed; each new index is built before the old one of that name is dropped.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PARTIAL = (
    (
        "ix_deliveries_provider_message",
        "deliveries",
        "provider_message_id",
        "provider_message_id IS NOT NULL",
    ),
    ("ix_interactions_delivery", "interactions", "delivery_id", "type <> 'SENT'"),
)


def _rebuild(name: str, table: str, column: str, where: str | None) -> None:
    """Build `name` again over `column` of `table` (of the rows matching `where`, if any) under a
    temporary name, then swap it in: the old index serves readers until the new one is valid."""
    building = f"{name}_new"
    predicate = f" WHERE {where}" if where else ""
    with op.get_context().autocommit_block():
        # A build cut short leaves an invalid index of that name behind: start over.
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {building}")
        op.execute(f"CREATE INDEX CONCURRENTLY {building} ON {table} ({column}){predicate}")
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        op.execute(f"ALTER INDEX {building} RENAME TO {name}")


def upgrade() -> None:
    for name, table, column, where in _PARTIAL:
        _rebuild(name, table, column, where)


def downgrade() -> None:
    for name, table, column, _ in _PARTIAL:
        _rebuild(name, table, column, None)
