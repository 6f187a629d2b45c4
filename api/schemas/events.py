"""Inbound events: customer events (POST /events) and provider delivery webhooks.

Every string is storable text, every instant within the supported years and every event's `data`
a bounded JSON object without NaN, Infinity, NUL or unpaired surrogates (api.schemas.common): what
reaches Postgres can be stored and compared there.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from api.schemas.common import (
    ApiIn,
    ApiOut,
    BatchItemProblem,
    JsonLimits,
    Rejected,
    SafeStr,
    SaneDatetime,
    each_on_its_own,
    storable_json,
)

EventId = Annotated[SafeStr, Field(min_length=1, max_length=200)]
Ref = Annotated[SafeStr, Field(min_length=1, max_length=200)]
Detail = Annotated[SafeStr, Field(max_length=500)]

# Event data is matched against trigger conditions and kept with the event: a record of what
# happened, nested a little (an order and its lines), never a document of unbounded shape.
EVENT_DATA_LIMITS = JsonLimits(depth=8, nodes=2000, key_chars=200)
EventData = Annotated[dict[str, Any], storable_json(EVENT_DATA_LIMITS)]


def as_utc(value: datetime) -> datetime:
    """Times without an offset are read as UTC (events belong to no single campaign timezone)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EventCreate(ApiIn):
    id: Annotated[SafeStr, Field(min_length=1, max_length=200)]
    type: Annotated[SafeStr, Field(min_length=1, max_length=200)]
    tenant_id: Annotated[SafeStr, Field(min_length=1, max_length=100)]
    club_id: Annotated[SafeStr, Field(max_length=100)] | None = None
    customer_id: Annotated[SafeStr, Field(min_length=1, max_length=40)]
    occurred_at: SaneDatetime
    data: EventData = Field(default_factory=dict)

    _utc = field_validator("occurred_at")(as_utc)


class EventAccepted(ApiOut):
    id: str
    # A repeated event id is accepted and ignored (it was routed the first time).
    duplicate: bool
    # TRIGGERED campaigns the event was queued for (ACTIVE) or counted as skipped by (PAUSED).
    triggered: int
    skipped_paused: int
    conversions_recorded: int


class EventBatch(ApiIn):
    """Each event stands on its own: a bad one is reported and the others are recorded."""

    events: Annotated[
        list[Annotated[EventCreate | Rejected, each_on_its_own(EventCreate)]],
        Field(min_length=1, max_length=1000),
    ]


class EventBatchAccepted(ApiOut):
    accepted: int = Field(description="valid events of the batch (duplicates included)")
    duplicates: int
    triggered: int
    skipped_paused: int
    conversions_recorded: int
    rejected: list[BatchItemProblem] | None = Field(
        None, description="only when some events are not valid: each of their problems (index, path, message)"
    )


class ProviderEvent(ApiIn):
    """One provider event; the message is named by `deliveryId` (ours) or `providerMessageId`."""

    id: EventId
    delivery_id: Ref | None = None
    provider_message_id: Ref | None = None
    occurred_at: SaneDatetime | None = None
    reason: Detail | None = None

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    @model_validator(mode="after")
    def _names_a_message(self) -> "ProviderEvent":
        if self.delivery_id is None and self.provider_message_id is None:
            raise ValueError("deliveryId or providerMessageId is required")
        return self


class EmailProviderEvent(ProviderEvent):
    type: Literal["DELIVERED", "BOUNCED"]
    # Only hard bounces suppress the address; a soft bounce is a deferral and records nothing.
    bounce_type: Literal["HARD", "SOFT"] = "HARD"


class SmsProviderEvent(ProviderEvent):
    type: Literal["DELIVERED", "FAILED"]
    error_code: Annotated[SafeStr, Field(max_length=50)] | None = None


# A provider resends a whole batch that was not accepted: each event is judged on its own, so one
# malformed event cannot hold back (or endlessly repeat) the others.
class EmailWebhook(ApiIn):
    events: Annotated[
        list[Annotated[EmailProviderEvent | Rejected, each_on_its_own(EmailProviderEvent)]],
        Field(min_length=1, max_length=1000),
    ]


class SmsWebhook(ApiIn):
    events: Annotated[
        list[Annotated[SmsProviderEvent | Rejected, each_on_its_own(SmsProviderEvent)]],
        Field(min_length=1, max_length=1000),
    ]


class WebhookResult(ApiOut):
    received: int = Field(description="events in the batch: recorded + duplicates + ignored + rejected")
    recorded: int
    duplicates: int
    ignored: int
    rejected: list[BatchItemProblem] | None = Field(
        None, description="only when some events are not valid: each of their problems (index, path, message)"
    )
