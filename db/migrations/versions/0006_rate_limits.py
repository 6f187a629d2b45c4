"""Rate limits: the shared token buckets of provider accounts and of the tenants sending on them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00

`rate_limit_accounts` holds one row per provider account (`email`, `sms`; later one per tenant
account): its per-second bucket and what it granted today (UTC). `rate_limit_lanes` holds one row
per account and tenant: the tenant's own bucket, refilled at its fair share of the account, and
when it last wanted tokens (which lanes share the account right now). Rows are created on first
use; every worker process draws on them (db.rate_limits).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'rate_limit_accounts',
        sa.Column('account', sa.String(100), primary_key=True),
        sa.Column('tokens', sa.Float(precision=53)),
        sa.Column('refilled_at', sa.DateTime(timezone=True)),
        sa.Column('day', sa.Date()),
        sa.Column('day_granted', sa.BigInteger(), nullable=False, server_default=sa.text('0')),
    )
    op.create_table(
        'rate_limit_lanes',
        sa.Column('account', sa.String(100), primary_key=True),
        sa.Column('tenant_id', sa.String(100), primary_key=True),
        sa.Column('tokens', sa.Float(precision=53)),
        sa.Column('refilled_at', sa.DateTime(timezone=True)),
        sa.Column('last_wanted_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('weight', sa.Float(precision=53), nullable=False, server_default=sa.text('1')),
    )


def downgrade() -> None:
    op.drop_table('rate_limit_lanes')
    op.drop_table('rate_limit_accounts')
