"""Outbound webhook endpoint schemas (docs/outbound-webhooks.md): what a tenant registers, what the
API shows back (never a secret, except once on create and on rotation), replays and stats."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from api.schemas.common import ApiIn, ApiOut, NoNul, Page, SaneDatetime, UtcDatetime
from api.schemas.customers import TenantId


class WebhookEventType(StrEnum):
    CAMPAIGN_STATUS_CHANGED = "campaign.status_changed"
    MESSAGE_SENT = "message.sent"
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGE_OPENED = "message.opened"
    MESSAGE_CLICKED = "message.clicked"
    MESSAGE_UNSUBSCRIBED = "message.unsubscribed"
    MESSAGE_BOUNCED = "message.bounced"
    MESSAGE_FAILED = "message.failed"
    MESSAGE_COMPLAINED = "message.complained"
    MESSAGE_CONVERTED = "message.converted"


EndpointUrl = Annotated[
    str,
    Field(
        min_length=8,
        max_length=2048,
        description="https URL the events are POSTed to; must resolve to public addresses",
    ),
    NoNul,
]
EventTypes = Annotated[
    list[WebhookEventType],
    Field(min_length=1, max_length=len(WebhookEventType), description="the event types to receive"),
]
Description = Annotated[str, Field(max_length=500), NoNul]


def unique_types(types: list[WebhookEventType] | None) -> list[str] | None:
    """The types once each, in the order of the list of types (a repeat is harmless)."""
    return None if types is None else [t.value for t in WebhookEventType if t in types]


class WebhookEndpointCreate(ApiIn):
    tenant_id: TenantId
    url: EndpointUrl
    event_types: EventTypes
    description: Description | None = None
    enabled: bool = True


class WebhookEndpointUpdate(ApiIn):
    """Fields left out stay as they are; `description: null` clears it."""

    url: EndpointUrl | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    enabled: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> "WebhookEndpointUpdate":
        for name in ("url", "event_types", "enabled"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null (leave it out to keep it)")
        return self


class WebhookEndpointPublic(ApiOut):
    """An endpoint as its tenant sees it: never its signing secret (shown once, at create and at
    rotation)."""

    id: str
    tenant_id: str
    url: str = Field(description="where the signed batches are POSTed (https unless an operator allows http)")
    event_types: list[str] = Field(description="the event types delivered; the others are passed over")
    description: str | None
    enabled: bool = Field(description="false: paused; events keep queueing and arrive once re-enabled")
    created_by: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class WebhookEndpointCreated(WebhookEndpointPublic):
    secret: str = Field(description="the signing secret (`whsec_...`): shown here once, never again")


class WebhookEndpointsPublic(Page[WebhookEndpointPublic]):
    """Newest first."""


class WebhookSecretRotated(ApiOut):
    id: str
    secret: str = Field(description="the new signing secret, shown once")
    previous_secret_valid_until: UtcDatetime = Field(
        description="until then requests are signed with the old secret too (two `v1,` signatures)"
    )


EventId = Annotated[str, Field(max_length=18, pattern=r"^[0-9]{1,18}$")]


class ReplayRequest(ApiIn):
    """Dead letters to send again: by event id, or by when the events happened (`from` inclusive,
    `to` exclusive; either may be left out; UTC without an offset). One of the two ways, not both."""

    event_ids: Annotated[list[EventId], Field(min_length=1, max_length=1000)] | None = None
    from_: SaneDatetime | None = Field(None, alias="from")
    to: SaneDatetime | None = None

    @field_validator("from_", "to")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """A time without an offset is UTC."""
        return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)

    @model_validator(mode="after")
    def _one_way(self) -> "ReplayRequest":
        by_time = self.from_ is not None or self.to is not None
        if self.event_ids is not None and by_time:
            raise ValueError("give eventIds or a time range, not both")
        if self.event_ids is None and not by_time:
            raise ValueError("give eventIds, or from and/or to")
        if self.from_ is not None and self.to is not None and self.to <= self.from_:
            raise ValueError("to must be after from")
        return self


class ReplayQueued(ApiOut):
    queued: int = Field(description="dead letters queued for delivery")


class WebhookEndpointStats(ApiOut):
    delivered: int = Field(description="events delivered (a 2xx), replays included")
    failed_attempts: int = Field(description="requests that got no 2xx")
    pending: int = Field(description="events waiting for delivery")
    dead: int = Field(description="dead letters not replayed successfully")
    replaying: int = Field(description="dead letters queued for replay")
    failing_since: UtcDatetime | None
    last_success_at: UtcDatetime | None
    last_error_at: UtcDatetime | None
    last_error: str | None
