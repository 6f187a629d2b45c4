"""What the lifecycle activities read and write of a campaign's row: its setup (what it sends, to
whom, on which channels) and the workflow's state copied into the read model.

The workflow is the source of truth for lifecycle state; these functions are the only writers of
the lifecycle columns, and an older state never overwrites a newer one (`state_version`).
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.messages import CampaignState, EditRequest
from db.campaigns import PLAIN_FIELDS
from db.models import Campaign
from db.rows import row_of

# The edit fields a DRAFT campaign may change, and their columns (the same names today).
EDITABLE = (
    "segment_id",
    "email_template_id",
    "sms_template_id",
    "channels",
    "schedule",
    "trigger_event",
    "trigger_conditions",
)


@dataclass(frozen=True)
class CampaignSetup:
    """A campaign as a send needs it: its kind, audience, channels, templates and trigger."""

    type: str
    segment_id: str | None
    channels: list[str]
    email_template_id: str | None
    sms_template_id: str | None
    schedule: dict[str, Any] | None
    trigger_event: str | None

    @classmethod
    def of(cls, row: RowMapping) -> "CampaignSetup":
        return row_of(cls, row)


async def campaign_setup(conn: AsyncConnection, campaign_id: str, tenant_id: str) -> CampaignSetup | None:
    """The campaign's setup, None when the tenant has no such campaign."""
    row = (
        (
            await conn.execute(
                select(
                    Campaign.type,
                    Campaign.segment_id,
                    Campaign.channels,
                    Campaign.email_template_id,
                    Campaign.sms_template_id,
                    Campaign.schedule,
                    Campaign.trigger_event,
                ).where(Campaign.id == campaign_id, Campaign.tenant_id == tenant_id)
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else CampaignSetup.of(row)


async def write_state(conn: AsyncConnection, campaign_id: str, version: int, st: CampaignState) -> None:
    """Copy the workflow's state into the read model unless a newer version is there already."""
    await conn.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.state_version < version)
        .values(
            status=st.lifecycle.status.value,
            scheduled_at=st.lifecycle.scheduled_at,
            started_at=st.lifecycle.started_at,
            paused_at=st.lifecycle.paused_at,
            resumed_at=st.lifecycle.resumed_at,
            cancelled_at=st.lifecycle.cancelled_at,
            completed_at=st.lifecycle.completed_at,
            target_count=st.tally.target_count,
            # `failed_count` is not written: the API's failed count comes from the roll-ups
            # (db.campaign_counts), and nothing reads the column.
            skipped_count=st.tally.counts.skipped,
            unknown_count=st.tally.counts.unknown,
            next_run_at=st.recurrence.next_run_at,
            last_run_at=st.recurrence.last_run_at,
            run_count=st.recurrence.run_count,
            last_error=st.lifecycle.last_error,
            expected_finish_at=st.tally.expected_finish_at,
            state_version=version,
            updated_at=datetime.now(UTC),
        )
    )


async def apply_edit(conn: AsyncConnection, campaign_id: str, tenant_id: str, edit: EditRequest) -> bool:
    """Write the fields the edit sets; False when it sets none (nothing written)."""
    values: dict[str, Any] = {name: getattr(edit, name) for name in EDITABLE if name in edit.fields_set}
    values.update({name: value for name, value in edit.columns.items() if name in PLAIN_FIELDS})
    if not values:
        return False
    await conn.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.tenant_id == tenant_id)
        .values(**values, updated_at=datetime.now(UTC))
    )
    return True
