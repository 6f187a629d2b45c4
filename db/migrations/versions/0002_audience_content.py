"""audience and content: template versions pinned by send runs, the tenant suppression list

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('templates', sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False))
    op.create_table(
        'template_versions',
        sa.Column('template_id', sa.String(length=40), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('subject', sa.Text(), nullable=True),
        sa.Column('html', sa.Text(), nullable=True),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('body', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['template_id'], ['templates.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('template_id', 'version'),
    )
    # Every existing template becomes version 1 of itself.
    op.execute(
        "INSERT INTO template_versions (template_id, version, subject, html, text, body, created_at)"
        " SELECT id, 1, subject, html, text, body, updated_at FROM templates"
    )
    op.add_column('send_runs', sa.Column('email_template_version', sa.Integer(), nullable=True))
    op.add_column('send_runs', sa.Column('sms_template_version', sa.Integer(), nullable=True))
    op.create_table(
        'suppressions',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('tenant_id', sa.String(length=100), nullable=False),
        sa.Column('channel', sa.String(length=8), nullable=False),
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('created_by', sa.String(length=200), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('tenant_id', 'channel', 'address', name='uq_suppressions_tenant_channel_address'),
    )
    op.create_index('ix_suppressions_tenant_created', 'suppressions', ['tenant_id', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_suppressions_tenant_created', table_name='suppressions')
    op.drop_table('suppressions')
    op.drop_column('send_runs', 'sms_template_version')
    op.drop_column('send_runs', 'email_template_version')
    op.drop_table('template_versions')
    op.drop_column('templates', 'version')
