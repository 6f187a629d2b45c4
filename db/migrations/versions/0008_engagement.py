"""Honest engagement: machine and human opens and clicks, follow-ups (issue 21)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 14:40:00

- `interactions.engagement_class` (`human` | `machine`) and `interactions.class_reason`: how an
  open or a click was classified when the tracking endpoint recorded it (core.engagement). NULL
  for every other type, and for opens and clicks recorded before this revision or reported by a
  provider's webhook: those count as human, as they always did. Added without a default, so the
  ALTER rewrites nothing on a large table.
- `campaigns.source_campaign_id` and `campaigns.follow_up`: a follow-up campaign's source and the
  outcome its audience was built from (`{"audience": ..., "reason": ..., "segmentId": ...,
  "recipients": n}`), NULL for other campaigns.

The roll-ups need no new table: human opens and clicks are counted under the extra types
`OPENED_HUMAN` and `CLICKED_HUMAN` in `interaction_firsts`, `campaign_counters` and
`campaign_hourly` (db.rollups).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("interactions", sa.Column("engagement_class", sa.String(length=8), nullable=True))
    op.add_column("interactions", sa.Column("class_reason", sa.String(length=60), nullable=True))
    op.add_column("campaigns", sa.Column("source_campaign_id", sa.String(length=40), nullable=True))
    op.add_column("campaigns", sa.Column("follow_up", JSONB(), nullable=True))
    op.create_index(
        "ix_campaigns_source",
        "campaigns",
        ["source_campaign_id"],
        postgresql_where=sa.text("source_campaign_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_campaigns_source", table_name="campaigns")
    op.drop_column("campaigns", "follow_up")
    op.drop_column("campaigns", "source_campaign_id")
    op.drop_column("interactions", "class_reason")
    op.drop_column("interactions", "engagement_class")
