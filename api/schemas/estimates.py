"""The estimate before sending (api.estimates)."""

from pydantic import Field

from api.schemas.common import ApiOut, UtcDatetime


class ChannelEstimate(ApiOut):
    audience: int = Field(description="Members of the segment looked at on this channel")
    to_send: int = Field(description="Messages the send would hand to the provider (held ones included)")
    held: int = Field(
        description="Of those, messages that wait: a local-time wave, a quiet window's end, a deferred cap"
    )
    first_held_until: UtcDatetime | None = Field(None, description="When the earliest held message is due")
    skipped: dict[str, int] = Field(description="Messages recorded SKIPPED, by reason")
    failed: dict[str, int] = Field(description="Messages that would fail before any provider call, by reason")
    sms_segments: int | None = Field(None, description="SMS segments in total (SMS only)")


class WaveEstimate(ApiOut):
    at: UtcDatetime
    messages: int


class CampaignEstimate(ApiOut):
    campaign_id: str
    at: UtcDatetime = Field(description="The instant judged: the scheduled time, else now")
    audience: int = Field(description="Members of the campaign's segment now")
    exact: bool = Field(description="False when a large segment was estimated from a sample and scaled")
    channels: dict[str, ChannelEstimate]
    waves: list[WaveEstimate] = Field(
        default_factory=list, description="Recipient-local delivery: messages per UTC instant"
    )
    expected_duration_seconds: float | None = Field(
        None, description="At the provider accounts' rate limits; null when no channel is limited"
    )
