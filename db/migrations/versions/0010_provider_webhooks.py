"""Provider webhooks in their own formats and the ledger settled on their evidence (issue 16)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 14:40:00

- `provider_webhooks`: a tenant's inbound webhook per provider; `credentials` holds what verifies
  the provider's signature (an auth token, a signing key, a public key, Basic credentials or an SNS
  topic), sealed with core.secrets and never returned.
- `provider_events`: one row per provider event acted on, unique on (provider, event id): a
  replayed event finds its row and changes nothing.
- `delivery_evidence`: what a provider said about one of our messages (provider, event id, type,
  time); an UNKNOWN delivery settled by it points here.
- `suppressions.reason`: why an entry is on the list when the service put it there (COMPLAINED,
  UNSUBSCRIBED, HARD_BOUNCED); NULL for an entry added through the API (skipped as SUPPRESSED).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        'provider_webhooks',
        sa.Column('id', sa.String(40), primary_key=True),
        sa.Column('tenant_id', sa.String(100), nullable=False),
        sa.Column('provider', sa.String(20), nullable=False),
        sa.Column('credentials', sa.Text(), nullable=False),
        sa.Column('created_by', sa.String(200), nullable=True),
        sa.Column('created_at', TS, nullable=False, server_default=sa.text('now()')),
    )
    op.create_index('ix_provider_webhooks_tenant', 'provider_webhooks', ['tenant_id', 'created_at'])
    op.create_table(
        'provider_events',
        sa.Column('provider', sa.String(20), nullable=False),
        sa.Column('event_id', sa.String(300), nullable=False),
        sa.Column('webhook_id', sa.String(40), nullable=False),
        sa.Column('received_at', TS, nullable=False, server_default=sa.text('now()')),
        sa.PrimaryKeyConstraint('provider', 'event_id', name='pk_provider_events'),
    )
    op.create_table(
        'delivery_evidence',
        sa.Column('delivery_id', sa.String(40), nullable=False),
        sa.Column('provider', sa.String(20), nullable=False),
        sa.Column('event_id', sa.String(300), nullable=False),
        sa.Column('event_type', sa.String(40), nullable=False),
        sa.Column('occurred_at', TS, nullable=False),
        sa.Column('settled', sa.String(16), nullable=True),
        sa.Column('detail', JSONB, nullable=True),
        sa.Column('recorded_at', TS, nullable=False, server_default=sa.text('now()')),
        sa.PrimaryKeyConstraint('delivery_id', 'provider', 'event_id', name='pk_delivery_evidence'),
    )
    op.add_column('suppressions', sa.Column('reason', sa.String(40), nullable=True))


def downgrade() -> None:
    op.drop_column('suppressions', 'reason')
    op.drop_table('delivery_evidence')
    op.drop_table('provider_events')
    op.drop_index('ix_provider_webhooks_tenant', table_name='provider_webhooks')
    op.drop_table('provider_webhooks')
