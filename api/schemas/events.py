"""Inbound events: customer events (POST /events) and provider delivery webhooks."""

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from api.schemas.common import ApiIn, ApiOut, SafeStr

EventId = Annotated[str, Field(min_length=1, max_length=200)]
Ref = Annotated[str, Field(min_length=1, max_length=200)]
Detail = Annotated[str, Field(max_length=500)]


def as_utc(value: datetime) -> datetime:
    """Times without an offset are read as UTC (events belong to no single campaign timezone)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EventCreate(ApiIn):
    id: Annotated[SafeStr, Field(min_length=1, max_length=200)]
    type: Annotated[SafeStr, Field(min_length=1, max_length=200)]
    tenant_id: Annotated[SafeStr, Field(min_length=1, max_length=100)]
    club_id: Annotated[SafeStr, Field(max_length=100)] | None = None
    customer_id: Annotated[SafeStr, Field(min_length=1, max_length=40)]
    occurred_at: datetime
    data: dict[str, Any] = Field(default_factory=dict)

    _utc = field_validator("occurred_at")(as_utc)

    @field_validator("data")
    @classmethod
    def _storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Postgres jsonb refuses the NUL character: a 422 here, never a 500 there.
        if "\\u0000" in json.dumps(value):
            raise ValueError("must not contain the NUL character (\\u0000)")
        return value


class EventAccepted(ApiOut):
    id: str
    # A repeated event id is accepted and ignored (it was routed the first time).
    duplicate: bool
    # TRIGGERED campaigns the event was queued for (ACTIVE) or counted as skipped by (PAUSED).
    triggered: int
    skipped_paused: int
    conversions_recorded: int


class EventBatch(ApiIn):
    events: Annotated[list[EventCreate], Field(min_length=1, max_length=1000)]


class EventBatchAccepted(ApiOut):
    accepted: int
    duplicates: int
    triggered: int
    skipped_paused: int
    conversions_recorded: int


class ProviderEvent(ApiIn):
    """One provider event; the message is named by `deliveryId` (ours) or `providerMessageId`."""

    id: EventId
    delivery_id: Ref | None = None
    provider_message_id: Ref | None = None
    occurred_at: datetime | None = None
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
    error_code: Annotated[str, Field(max_length=50)] | None = None


class EmailWebhook(ApiIn):
    events: Annotated[list[EmailProviderEvent], Field(min_length=1, max_length=1000)]


class SmsWebhook(ApiIn):
    events: Annotated[list[SmsProviderEvent], Field(min_length=1, max_length=1000)]


class WebhookResult(ApiOut):
    received: int
    recorded: int
    duplicates: int
    ignored: int
