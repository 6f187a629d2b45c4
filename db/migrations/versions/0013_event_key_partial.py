"""Interactions: the unique index on `event_key` holds only the rows that have a key (issue 14)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 02:30:00

`event_key` makes webhook events, opens, clicks and conversions idempotent (`ON CONFLICT
(event_key)`). A send's interaction has no key, yet the full unique index took an entry for it:
one more B-tree insertion for every message sent, and 60 bytes of WAL. A partial index on the keyed
rows keeps the same guarantee (NULLs never conflicted) and leaves sends out
(`bench.ledger_bench --messages 16000 --slots 16`: 3 to 5 µs of Postgres CPU less per message).

The new index is built concurrently (writes go on during the build on a large table), then the old
constraint is dropped, which holds its table lock only for the drop.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # A build cut short leaves an invalid index of that name behind: start over.
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS uq_interactions_event_key")
        op.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY uq_interactions_event_key ON interactions (event_key)"
            " WHERE event_key IS NOT NULL"
        )
    op.drop_constraint('interactions_event_key_key', 'interactions', type_='unique')


def downgrade() -> None:
    op.create_unique_constraint('interactions_event_key_key', 'interactions', ['event_key'])
    op.drop_index('uq_interactions_event_key', table_name='interactions')
