"""A message's SENT is its ledger row: an index lists a campaign's SENT rows newest first (issue 14)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 03:30:00

A send wrote its SENT twice: the ledger row's outcome and sending time, and an interaction row that
repeated them (a heap row and four index entries, a quarter of the step's Postgres CPU and 40 % of
its WAL). The step now writes only the ledger row, and the interactions page lists a message's SENT
from it (db.stats). This index serves that page: a campaign's SENT rows by sending time, newest
first. Only SENT rows are in it, so a claim takes no entry and the answer one.

SENT interaction rows written before this (and those a provider's webhook writes when it settles
an UNKNOWN message) stay in `interactions`, where they were counted; the page does not list them, so
no message is listed twice. Built concurrently, like 0013.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # A build cut short leaves an invalid index of that name behind: start over.
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_deliveries_campaign_sent")
        op.execute(
            "CREATE INDEX CONCURRENTLY ix_deliveries_campaign_sent ON deliveries (campaign_id, sent_at, id)"
            " WHERE outcome = 'SENT'"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_deliveries_campaign_sent")
