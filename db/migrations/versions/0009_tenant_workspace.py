"""Tenant workspace: settings, sender identities with DKIM, provider accounts (issue 16)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 14:40:00

- `tenant_settings`: one settings document per tenant (api.schemas.tenant_settings); no row: every
  value at its documented default. The sending policy stays in `tenant_policies`.
- `provider_accounts`: a tenant's SMTP relays and SMS providers; `config` holds what may be shown
  (host, port, ...), `secret` the credential sealed with core.secrets (never returned).
- `sender_identities`: who a tenant's messages come from (email From/Reply-To, SMS sender), the
  accounts they go through, and the email domain's DKIM key (private key sealed in `dkim_key`, the
  public half in `dkim_public`); `verified_at` is set once the published TXT record matched.
- `campaigns.sender_identity_id`: the identity a campaign sends as (NULL: the tenant's default).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        'tenant_settings',
        sa.Column('tenant_id', sa.String(100), primary_key=True),
        sa.Column('settings', JSONB, nullable=False),
        sa.Column('updated_at', TS, nullable=False, server_default=sa.text('now()')),
    )
    op.create_table(
        'provider_accounts',
        sa.Column('id', sa.String(40), primary_key=True),
        sa.Column('tenant_id', sa.String(100), nullable=False),
        sa.Column('kind', sa.String(8), nullable=False),
        sa.Column('name', sa.String(200), nullable=False),
        sa.Column('config', JSONB, nullable=False),
        sa.Column('secret', sa.Text, nullable=True),
        sa.Column('created_at', TS, nullable=False, server_default=sa.text('now()')),
        sa.Column('updated_at', TS, nullable=False, server_default=sa.text('now()')),
    )
    op.create_index('ix_provider_accounts_tenant', 'provider_accounts', ['tenant_id', 'id'])
    op.create_table(
        'sender_identities',
        sa.Column('id', sa.String(40), primary_key=True),
        sa.Column('tenant_id', sa.String(100), nullable=False),
        sa.Column('club_id', sa.String(100), nullable=True),
        sa.Column('name', sa.String(200), nullable=False),
        sa.Column('from_name', sa.String(200), nullable=True),
        sa.Column('from_address', sa.String(320), nullable=True),
        sa.Column('reply_to', sa.String(320), nullable=True),
        sa.Column('sms_sender', sa.String(20), nullable=True),
        sa.Column('email_account_id', sa.String(40), nullable=True),
        sa.Column('sms_account_id', sa.String(40), nullable=True),
        sa.Column('dkim_selector', sa.String(63), nullable=True),
        sa.Column('dkim_key', sa.Text, nullable=True),
        sa.Column('dkim_public', sa.Text, nullable=True),
        sa.Column('verified_at', TS, nullable=True),
        sa.Column('created_at', TS, nullable=False, server_default=sa.text('now()')),
        sa.Column('updated_at', TS, nullable=False, server_default=sa.text('now()')),
    )
    op.create_index('ix_sender_identities_tenant', 'sender_identities', ['tenant_id', 'id'])
    op.add_column('campaigns', sa.Column('sender_identity_id', sa.String(40), nullable=True))


def downgrade() -> None:
    op.drop_column('campaigns', 'sender_identity_id')
    op.drop_index('ix_sender_identities_tenant', table_name='sender_identities')
    op.drop_table('sender_identities')
    op.drop_index('ix_provider_accounts_tenant', table_name='provider_accounts')
    op.drop_table('provider_accounts')
    op.drop_table('tenant_settings')
