"""What the API shows of a campaign: the stored row plus what is counted elsewhere.

The row's own columns are read into the response models by name (`model_validate`); the figures
come from the ledger and the roll-ups (db.campaign_counts), so a campaign's counts read the same
here, in the list and in /stats.
"""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from api.schemas.campaigns import CampaignPublic, CampaignsPublic, WavePublic
from api.schemas.common import paginate
from core.enums import CampaignStatus
from db import policies
from db.campaign_counts import RecipientCounts, rate, recipient_counts
from db.campaigns import CampaignRow
from db.pages import Slice, Window
from db.segments import owned_segment


def _figures(counts: RecipientCounts) -> dict[str, Any]:
    return {
        "sent_count": counts.sent,
        "delivered_count": counts.delivered,
        "opened_count": counts.opened,
        "clicked_count": counts.clicked,
        "converted_count": counts.converted,
        "unsubscribed_count": counts.unsubscribed,
        "bounced_count": counts.bounced,
        "failed_count": counts.failed,
        "open_rate": rate(counts.opened, counts.delivered),
    }


async def to_public(conn: AsyncConnection, row: CampaignRow) -> CampaignPublic:
    """The full campaign: its row, its figures, its segment's name and its waiting waves."""
    counts = (await recipient_counts(conn, [row.id]))[row.id]
    segment = await owned_segment(conn, [row.tenant_id], row.segment_id) if row.segment_id else None
    return public_of(row, counts, segment.name if segment is not None else None, await waves_of(conn, row))


async def waves_of(conn: AsyncConnection, row: CampaignRow) -> list[WavePublic] | None:
    """The waves still waiting, for a campaign that delivers in waves (None for the others)."""
    if not row.deliver_at:
        return None
    return [WavePublic(at=w.at, held=w.held) for w in await policies.waves(conn, row.id)]


def public_of(
    row: CampaignRow, counts: RecipientCounts, segment_name: str | None, waves: list[WavePublic] | None
) -> CampaignPublic:
    """The response of GET /campaigns/:id from what was read (however it was read)."""
    return CampaignPublic.model_validate(
        {
            **vars(row),  # the row's columns as they are (as_mapping deep-copies: 5 % of the route)
            **_figures(counts),
            "segment_name": segment_name,
            "holdout_percent": row.holdout_percent or 0.0,
            # Only a sending campaign has a pace to finish at.
            "expected_finish_at": row.expected_finish_at if row.status == CampaignStatus.ACTIVE else None,
            "waves": waves,
        }
    )


async def to_page(conn: AsyncConnection, rows: Slice[CampaignRow], window: Window) -> CampaignsPublic:
    """A page of the campaign list: each row's summary with its sent count and open rate."""
    counts = await recipient_counts(conn, [r.id for r in rows.rows])
    summaries = [{**vars(r), **_figures(counts[r.id])} for r in rows.rows]  # vars: no deep copy
    return paginate(CampaignsPublic, Slice(rows.total, summaries), window)
