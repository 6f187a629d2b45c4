"""Sends counted as they are recorded: `counter_deltas` (issue 14)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 12:30:00

The ledger's step statement counts the SENT answers it records (docs/architecture.md, "Counting
sends"): it inserts each send's interaction already counted, the recipient's first-of-a-kind row,
and one row here per (campaign, channel) with the step's events and new recipients. The roll-ups
fold these rows into `campaign_counters` and `campaign_hourly` and delete them; every read adds
the rows not folded yet. Before this, each send's interaction was inserted uncounted and a roll-up
updated it later, a second version of the row with all six of its index entries again.

Append-only by design: concurrent group commits of one campaign never wait on a shared counter
row (which they would until each commit's flush).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        'counter_deltas',
        sa.Column('id', sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column('campaign_id', sa.String(length=40), nullable=False),
        sa.Column('channel', sa.String(length=8), nullable=False),
        sa.Column('type', sa.String(length=16), nullable=False),
        sa.Column('hour', TS, nullable=False),
        sa.Column('recipients', sa.BigInteger(), nullable=False),
        sa.Column('events', sa.BigInteger(), nullable=False),
    )
    op.create_index('ix_counter_deltas_campaign', 'counter_deltas', ['campaign_id'])


def downgrade() -> None:
    # Fold what is left first, so a downgrade loses no count.
    op.execute(
        """
        WITH d AS (DELETE FROM counter_deltas RETURNING *),
        c AS (
            INSERT INTO campaign_counters AS k (campaign_id, channel, type, recipients, events)
            SELECT campaign_id, channel, type, sum(recipients), sum(events) FROM d
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (campaign_id, channel, type) DO UPDATE
            SET recipients = k.recipients + excluded.recipients, events = k.events + excluded.events
        )
        INSERT INTO campaign_hourly AS h (campaign_id, hour, type, recipients)
        SELECT campaign_id, hour, type, sum(recipients) FROM d WHERE channel = 'ALL'
        GROUP BY 1, 2, 3 HAVING sum(recipients) > 0 ORDER BY 1, 2, 3
        ON CONFLICT (campaign_id, hour, type) DO UPDATE SET recipients = h.recipients + excluded.recipients
        """
    )
    op.drop_index('ix_counter_deltas_campaign', table_name='counter_deltas')
    op.drop_table('counter_deltas')
