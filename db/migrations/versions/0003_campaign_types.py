"""RECURRING, TRIGGERED and JOURNEY campaigns: schedules, events, trigger queue, run kinds

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 11:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('campaigns', sa.Column('schedule', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column('campaigns', sa.Column('next_run_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('campaigns', sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('campaigns', sa.Column('run_count', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.add_column('campaigns', sa.Column('trigger_event', sa.String(length=200), nullable=True))
    op.add_column(
        'campaigns', sa.Column('trigger_conditions', postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.create_index(
        'ix_campaigns_tenant_trigger', 'campaigns', ['tenant_id', 'trigger_event'], unique=False,
        postgresql_where=sa.text("type = 'TRIGGERED'"),
    )

    op.add_column('send_runs', sa.Column('kind', sa.String(length=8), server_default=sa.text("'SEGMENT'"), nullable=False))
    op.add_column('send_runs', sa.Column('source_id', sa.String(length=200), nullable=True))
    op.drop_constraint('uq_send_runs_campaign_number', 'send_runs', type_='unique')
    op.create_index(
        'uq_send_runs_campaign_number', 'send_runs', ['campaign_id', 'number'], unique=True,
        postgresql_where=sa.text("kind = 'SEGMENT'"),
    )

    op.create_table(
        'customer_events',
        sa.Column('tenant_id', sa.String(length=100), nullable=False),
        sa.Column('id', sa.String(length=200), nullable=False),
        sa.Column('type', sa.String(length=200), nullable=False),
        sa.Column('customer_id', sa.String(length=40), nullable=False),
        sa.Column('club_id', sa.String(length=100), nullable=True),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('tenant_id', 'id'),
    )
    op.create_index(
        'ix_customer_events_customer_type', 'customer_events',
        ['tenant_id', 'customer_id', 'type', 'received_at'], unique=False,
    )
    op.create_table(
        'trigger_matches',
        sa.Column('seq', sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column('campaign_id', sa.String(length=40), nullable=False),
        sa.Column('tenant_id', sa.String(length=100), nullable=False),
        sa.Column('event_id', sa.String(length=200), nullable=False),
        sa.Column('customer_id', sa.String(length=40), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('seq'),
        sa.UniqueConstraint('campaign_id', 'event_id', name='uq_trigger_matches_campaign_event'),
    )
    op.create_index(
        'ix_trigger_matches_pending', 'trigger_matches', ['campaign_id', 'seq'], unique=False,
        postgresql_where=sa.text("state = 'PENDING'"),
    )


def downgrade() -> None:
    op.drop_index('ix_trigger_matches_pending', table_name='trigger_matches')
    op.drop_table('trigger_matches')
    op.drop_index('ix_customer_events_customer_type', table_name='customer_events')
    op.drop_table('customer_events')
    op.drop_index('uq_send_runs_campaign_number', table_name='send_runs')
    op.create_unique_constraint('uq_send_runs_campaign_number', 'send_runs', ['campaign_id', 'number'])
    op.drop_column('send_runs', 'source_id')
    op.drop_column('send_runs', 'kind')
    op.drop_index('ix_campaigns_tenant_trigger', table_name='campaigns')
    for column in ('trigger_conditions', 'trigger_event', 'run_count', 'last_run_at', 'next_run_at', 'schedule'):
        op.drop_column('campaigns', column)
