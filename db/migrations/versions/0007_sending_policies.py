"""Sending policies: tenant policies, campaign overrides, customer timezones, frequency holds and
messages held by quiet hours

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:20:00

- `tenant_policies`: one policy document per tenant (core.policy.TenantPolicy); a tenant without a
  row has the defaults.
- `campaigns.policy`: the campaign's overrides (core.policy.CampaignPolicy), NULL for none.
- `campaigns.deliver_at`: recipient-local delivery (core.policy.DeliverAt), NULL for none.
- `campaigns.approved_by`, `approved_at`: who approved the campaign (when the tenant requires it).
- `campaigns.holdout_percent`: the share of the audience held out as a control group.
- `campaigns.expected_finish_at`: when the run will be sent at the rate limits' current pace.
- `campaigns.ab_test`, `ab_winner`, `ab_decision`: an A/B test, its winner and why
  (core.experiments); `deliveries.variant`: the variant each message carried.
- `customers.timezone`: the recipient's IANA zone, for quiet hours; NULL reads the campaign's.
- `frequency_holds`: one row per message a frequency cap counted (written as the message passes the
  gate, under a per-person lock), so two campaigns racing for one person cannot both pass a cap.
- `held_messages`: messages that quiet hours hold back until `until`; the campaign sends them when
  the window ends (`sweep` says which of its sweeps took each one).
- `holdout_conversions`: conversions of holdout recipients (never messaged), for the lift.
- `test_sends`: the record of test sends and seed copies (`kind`), never in the ledger or the
  stats; a seed address gets one copy per campaign, channel and A/B variant (a unique index).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        'tenant_policies',
        sa.Column('tenant_id', sa.String(100), primary_key=True),
        sa.Column('policy', JSONB, nullable=False),
        sa.Column('updated_at', TS, nullable=False, server_default=sa.text('now()')),
    )
    op.add_column('campaigns', sa.Column('policy', JSONB(none_as_null=True), nullable=True))
    op.add_column('campaigns', sa.Column('deliver_at', JSONB(none_as_null=True), nullable=True))
    op.add_column('campaigns', sa.Column('approved_by', sa.String(200), nullable=True))
    op.add_column('campaigns', sa.Column('holdout_percent', sa.Float, nullable=False, server_default='0'))
    op.add_column('campaigns', sa.Column('expected_finish_at', TS, nullable=True))
    op.add_column('campaigns', sa.Column('ab_test', JSONB(none_as_null=True), nullable=True))
    op.add_column('campaigns', sa.Column('ab_winner', sa.String(1), nullable=True))
    op.add_column('campaigns', sa.Column('ab_decision', JSONB(none_as_null=True), nullable=True))
    op.add_column('deliveries', sa.Column('variant', sa.String(1), nullable=True))
    op.add_column('campaigns', sa.Column('approved_at', TS, nullable=True))
    op.add_column('customers', sa.Column('timezone', sa.String(64), nullable=True))
    op.create_table(
        'frequency_holds',
        sa.Column('run_id', sa.String(60), nullable=False),
        sa.Column('customer_id', sa.String(40), nullable=False),
        sa.Column('channel', sa.String(8), nullable=False),
        sa.Column('tenant_id', sa.String(100), nullable=False),
        sa.Column('held_at', TS, nullable=False, server_default=sa.text('now()')),
        sa.PrimaryKeyConstraint('run_id', 'customer_id', 'channel'),
    )
    op.create_index(
        'ix_frequency_holds_person', 'frequency_holds', ['tenant_id', 'channel', 'customer_id', 'held_at']
    )
    op.create_table(
        'held_messages',
        sa.Column('run_id', sa.String(60), nullable=False),
        sa.Column('customer_id', sa.String(40), nullable=False),
        sa.Column('channel', sa.String(8), nullable=False),
        sa.Column('campaign_id', sa.String(40), nullable=False),
        sa.Column('tenant_id', sa.String(100), nullable=False),
        sa.Column('until', TS, nullable=False),
        sa.Column('sweep', sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint('run_id', 'customer_id', 'channel'),
    )
    op.create_index('ix_held_messages_campaign', 'held_messages', ['campaign_id', 'sweep', 'until'])
    op.create_table(
        'test_sends',
        sa.Column('id', sa.String(40), primary_key=True),
        sa.Column('tenant_id', sa.String(100), nullable=False),
        sa.Column('campaign_id', sa.String(40), nullable=False),
        sa.Column('channel', sa.String(8), nullable=False),
        sa.Column('address', sa.String(320), nullable=False),
        sa.Column('outcome', sa.String(16), nullable=False),
        sa.Column('detail', sa.Text, nullable=True),
        sa.Column('created_by', sa.String(200), nullable=True),
        sa.Column('created_at', TS, nullable=False, server_default=sa.text('now()')),
        sa.Column('kind', sa.String(8), nullable=False, server_default='TEST'),
        sa.Column('variant', sa.String(1), nullable=False, server_default=''),
    )
    op.create_index('ix_test_sends_tenant_time', 'test_sends', ['tenant_id', 'created_at'])
    op.create_table(
        'holdout_conversions',
        sa.Column('campaign_id', sa.String(40), nullable=False),
        sa.Column('customer_id', sa.String(40), nullable=False),
        sa.Column('tenant_id', sa.String(100), nullable=False),
        sa.Column('event_id', sa.String(200), nullable=False),
        sa.Column('occurred_at', TS, nullable=False),
        sa.PrimaryKeyConstraint('campaign_id', 'customer_id'),
    )
    op.create_index(
        'uq_test_sends_seed', 'test_sends', ['campaign_id', 'channel', 'variant', 'address'], unique=True,
        postgresql_where=sa.text("kind = 'SEED'"),
    )


def downgrade() -> None:
    op.drop_table('holdout_conversions')
    op.drop_index('uq_test_sends_seed', table_name='test_sends')
    op.drop_index('ix_test_sends_tenant_time', table_name='test_sends')
    op.drop_table('test_sends')
    op.drop_index('ix_held_messages_campaign', table_name='held_messages')
    op.drop_table('held_messages')
    op.drop_index('ix_frequency_holds_person', table_name='frequency_holds')
    op.drop_table('frequency_holds')
    op.drop_column('customers', 'timezone')
    op.drop_column('deliveries', 'variant')
    op.drop_column('campaigns', 'ab_decision')
    op.drop_column('campaigns', 'ab_winner')
    op.drop_column('campaigns', 'ab_test')
    op.drop_column('campaigns', 'expected_finish_at')
    op.drop_column('campaigns', 'holdout_percent')
    op.drop_column('campaigns', 'approved_at')
    op.drop_column('campaigns', 'approved_by')
    op.drop_column('campaigns', 'deliver_at')
    op.drop_column('campaigns', 'policy')
    op.drop_table('tenant_policies')
