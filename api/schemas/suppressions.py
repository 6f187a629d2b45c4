"""Suppression list schemas: an address (email or E.164 phone) a tenant never sends to on a channel."""

from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from api.schemas.common import ApiIn, ApiOut, NoNul, Page, UtcDatetime
from api.schemas.customers import TenantId
from core.addresses import canonical_email, canonical_phone
from core.enums import Channel


def normalised_address(channel: Channel, address: str) -> str:
    """The stored form (core.addresses), the same one customers' addresses are stored in, so an
    entry matches its address however it was written. ValueError for an address not of the channel."""
    return canonical_email(address) if channel == Channel.EMAIL else canonical_phone(address)


class SuppressionCreate(ApiIn):
    tenant_id: TenantId
    channel: Channel
    address: Annotated[str, Field(min_length=1, max_length=320), NoNul] = Field(
        description="EMAIL: a bare email address (stored lower-cased, so it matches any case); "
        "SMS: an E.164 phone"
    )
    note: Annotated[str, Field(max_length=1000), NoNul] | None = None

    @field_validator("address")
    @classmethod
    def _address_of_channel(cls, value: str, info: ValidationInfo) -> str:
        channel = info.data.get("channel")  # absent when the channel itself is invalid
        return value if channel is None else normalised_address(channel, value)


class SuppressionPublic(ApiOut):
    id: str
    tenant_id: str
    channel: Channel
    address: str
    note: str | None
    created_by: str | None
    created_at: UtcDatetime


class SuppressionsPublic(Page[SuppressionPublic]):
    """Newest first."""
