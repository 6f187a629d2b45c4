"""campaigns.last_error: why a campaign paused itself (a step that could not succeed)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 11:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('campaigns', sa.Column('last_error', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('campaigns', 'last_error')
