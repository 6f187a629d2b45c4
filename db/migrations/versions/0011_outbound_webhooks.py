"""Outbound webhooks to the tenants' own systems (issue 16)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 14:40:00

- `webhook_endpoints`: a tenant's receiver (URL, event types, sealed signing secret), its
  delivery position in the outbox (`cursor_xid`, `cursor_id`) and its delivery stats.
- `webhook_outbox`: every fact a tenant with an endpoint may hear about, one row each,
  written by the triggers below in the transaction that records the fact. The event id is `id`;
  `xid` (the writing transaction) orders delivery: see db.webhook_outbox for why.
- `webhook_dead_letters`: events an endpoint failed to take for too long, kept (with their
  payload) until replayed.
- Triggers: interactions (every insert: message.sent/delivered/opened/clicked/converted/
  unsubscribed/bounced/failed; the ledger's outcomes, and UNKNOWN deliveries settled on a
  provider's evidence, are all logged there too), suppressions added with reason COMPLAINED
  (message.complained) and campaign status updates (campaign.status_changed). Each writes only
  for tenants with an endpoint (a disabled one too, so it resumes where it stopped); the
  interactions and suppressions triggers are per statement (one INSERT ... SELECT over the
  statement's new rows), the campaigns one is a rare update filtered by a WHEN clause before any
  function runs.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.TIMESTAMP(timezone=True)

_FUNCTIONS = """
CREATE FUNCTION webhook_outbox_interactions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_outbox (tenant_id, campaign_id, type, payload)
    SELECT n.tenant_id, n.campaign_id, 'message.' || lower(n.type),
           jsonb_build_object('interactionId', n.id, 'deliveryId', n.delivery_id,
                              'customerId', n.customer_id, 'channel', n.channel,
                              'occurredAt', n.occurred_at, 'metadata', n.metadata)
    FROM webhook_new_rows n
    WHERE n.tenant_id IN (SELECT tenant_id FROM webhook_endpoints)
    ORDER BY n.occurred_at, n.id;
    RETURN NULL;
END $$;

CREATE FUNCTION webhook_outbox_complaints() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_outbox (tenant_id, campaign_id, type, payload)
    SELECT n.tenant_id, NULL, 'message.complained',
           jsonb_build_object('suppressionId', n.id, 'channel', n.channel, 'address', n.address,
                              'occurredAt', n.created_at)
    FROM webhook_new_rows n
    WHERE n.reason = 'COMPLAINED'
      AND n.tenant_id IN (SELECT tenant_id FROM webhook_endpoints)
    ORDER BY n.created_at, n.id;
    RETURN NULL;
END $$;

CREATE FUNCTION webhook_outbox_campaigns() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_outbox (tenant_id, campaign_id, type, payload)
    SELECT NEW.tenant_id, NEW.id, 'campaign.status_changed',
           jsonb_build_object('campaignId', NEW.id, 'name', NEW.name, 'type', NEW.type,
                              'status', NEW.status, 'previousStatus', OLD.status,
                              'occurredAt', now())
    WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE tenant_id = NEW.tenant_id);
    RETURN NULL;
END $$;
"""

_TRIGGERS = """
CREATE TRIGGER webhook_outbox_interactions AFTER INSERT ON interactions
    REFERENCING NEW TABLE AS webhook_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_outbox_interactions();
CREATE TRIGGER webhook_outbox_complaints AFTER INSERT ON suppressions
    REFERENCING NEW TABLE AS webhook_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_outbox_complaints();
CREATE TRIGGER webhook_outbox_campaigns AFTER UPDATE ON campaigns
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION webhook_outbox_campaigns();
"""


def upgrade() -> None:
    op.create_table(
        'webhook_endpoints',
        sa.Column('id', sa.String(40), primary_key=True),
        sa.Column('tenant_id', sa.String(100), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('event_types', ARRAY(sa.String(40)), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('enabled', sa.Boolean(), nullable=False, server_default=sa.text('true')),
        sa.Column('secret', sa.Text(), nullable=False),
        sa.Column('previous_secret', sa.Text(), nullable=True),
        sa.Column('previous_secret_until', TS, nullable=True),
        sa.Column('cursor_xid', sa.Text(), nullable=False),
        sa.Column('cursor_id', sa.BigInteger(), nullable=False, server_default=sa.text('0')),
        sa.Column('failing_since', TS, nullable=True),
        sa.Column('last_success_at', TS, nullable=True),
        sa.Column('last_error_at', TS, nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('delivered_count', sa.BigInteger(), nullable=False, server_default=sa.text('0')),
        sa.Column('failed_attempts', sa.BigInteger(), nullable=False, server_default=sa.text('0')),
        sa.Column('created_by', sa.String(200), nullable=True),
        sa.Column('created_at', TS, nullable=False, server_default=sa.text('now()')),
        sa.Column('updated_at', TS, nullable=False, server_default=sa.text('now()')),
    )
    op.execute("ALTER TABLE webhook_endpoints ALTER COLUMN cursor_xid TYPE xid8 USING cursor_xid::xid8")
    op.create_index('ix_webhook_endpoints_tenant_created', 'webhook_endpoints', ['tenant_id', 'created_at'])
    op.create_table(
        'webhook_outbox',
        sa.Column('id', sa.BigInteger(), autoincrement=True, primary_key=True),
        sa.Column('tenant_id', sa.String(100), nullable=False),
        sa.Column('campaign_id', sa.String(40), nullable=True),
        sa.Column('type', sa.String(40), nullable=False),
        sa.Column('payload', JSONB(), nullable=False),
        sa.Column('created_at', TS, nullable=False, server_default=sa.text('now()')),
    )
    op.execute(
        "ALTER TABLE webhook_outbox ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id()"
    )
    op.create_index('ix_webhook_outbox_position', 'webhook_outbox', ['tenant_id', 'xid', 'id'])
    op.create_index('ix_webhook_outbox_created', 'webhook_outbox', ['created_at'])
    op.create_table(
        'webhook_dead_letters',
        sa.Column(
            'endpoint_id', sa.String(40),
            sa.ForeignKey('webhook_endpoints.id', ondelete='CASCADE'), nullable=False,
        ),
        sa.Column('event_id', sa.BigInteger(), nullable=False),
        sa.Column('event', JSONB(), nullable=False),
        sa.Column('occurred_at', TS, nullable=False),
        sa.Column('dead_at', TS, nullable=False, server_default=sa.text('now()')),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('replay_requested_at', TS, nullable=True),
        sa.Column('replayed_at', TS, nullable=True),
        sa.PrimaryKeyConstraint('endpoint_id', 'event_id', name='pk_webhook_dead_letters'),
    )
    op.create_index(
        'ix_webhook_dead_letters_replay', 'webhook_dead_letters', ['endpoint_id', 'event_id'],
        postgresql_where=sa.text('replay_requested_at IS NOT NULL AND replayed_at IS NULL'),
    )
    op.execute(_FUNCTIONS)
    op.execute(_TRIGGERS)


def downgrade() -> None:
    for trigger, table in (
        ('webhook_outbox_interactions', 'interactions'),
        ('webhook_outbox_complaints', 'suppressions'),
        ('webhook_outbox_campaigns', 'campaigns'),
    ):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {trigger}()")
    op.drop_table('webhook_dead_letters')
    op.drop_table('webhook_outbox')
    op.drop_table('webhook_endpoints')
