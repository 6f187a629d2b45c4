"""Sender identities at the API edge (docs/tenants-and-providers.md).

An identity says who a tenant's messages come from: an email From (name and address), a Reply-To,
and an SMS sender (an E.164 number, a short code, or an alphanumeric id of at most 11 characters).
An email identity carries a DKIM key for its From domain, generated here (`"generate": true`) or
uploaded as PEM (`privateKey`); the key is never returned, only the TXT record to publish.
"""

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from api.schemas.common import ApiIn, ApiOut, NoNul, Page, UtcDatetime
from core.addresses import canonical_email, canonical_phone

Name = Annotated[str, Field(min_length=1, max_length=200), NoNul]
OptionalId = Annotated[str, Field(min_length=1, max_length=40), NoNul]
Selector = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length=63)]
SHORT_CODE = re.compile(r"^[0-9]{3,8}$")
ALPHANUMERIC = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")


def check_sms_sender(value: str | None) -> str | None:
    """An E.164 number (canonical form), a short code (3-8 digits) or an alphanumeric sender id
    (1-11 letters, digits and spaces, with at least one letter)."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith("+"):
        return canonical_phone(value)
    if SHORT_CODE.fullmatch(value) or ALPHANUMERIC.fullmatch(value):
        return value
    raise ValueError(
        "smsSender must be an E.164 number (+15551234567), a short code (3-8 digits) or an "
        "alphanumeric id of at most 11 letters, digits and spaces"
    )


def check_address(value: str | None) -> str | None:
    return None if value is None else canonical_email(value)


def check_display_name(value: str | None) -> str | None:
    if value is not None and ("\r" in value or "\n" in value):
        raise ValueError("a display name is one line")
    return value


class DkimIn(ApiIn):
    """The From domain's DKIM key: `generate` an RSA 2048 key, or upload `privateKey` (PEM)."""

    selector: Selector = "campaigns"
    generate: bool = False
    private_key: Annotated[str, Field(min_length=1, max_length=10_000)] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "DkimIn":
        if self.generate == (self.private_key is not None):
            raise ValueError("give exactly one of `generate: true` or `privateKey`")
        return self


class _IdentityFields(ApiIn):
    name: Name | None = None
    club_id: Annotated[str, Field(max_length=100), NoNul] | None = None
    from_name: Annotated[str, Field(max_length=200), NoNul] | None = None
    from_address: Annotated[str, Field(max_length=320)] | None = None
    reply_to: Annotated[str, Field(max_length=320)] | None = None
    sms_sender: Annotated[str, Field(max_length=20)] | None = None
    email_account_id: OptionalId | None = None
    sms_account_id: OptionalId | None = None
    dkim: DkimIn | None = None

    _addresses = field_validator("from_address", "reply_to")(check_address)
    _sender = field_validator("sms_sender")(check_sms_sender)
    _display = field_validator("from_name")(check_display_name)


class SenderIdentityCreate(_IdentityFields):
    """A new identity of `tenantId`; without `dkim`, an email identity gets a generated key."""

    tenant_id: Annotated[str, Field(min_length=1, max_length=100), NoNul]
    name: Name

    @model_validator(mode="after")
    def _something_to_send_as(self) -> "SenderIdentityCreate":
        if self.from_address is None and self.sms_sender is None:
            raise ValueError("give a `fromAddress`, an `smsSender`, or both")
        if self.from_address is None and (self.reply_to or self.from_name or self.dkim):
            raise ValueError("`fromName`, `replyTo` and `dkim` need a `fromAddress`")
        return self


class SenderIdentityPatch(_IdentityFields):
    """JSON merge-patch: a field sent is set (`null` clears it), a field left out is kept. A new
    `fromAddress` domain or a new `dkim` key makes the identity unverified again."""


class DnsRecord(ApiOut):
    name: str
    type: str = "TXT"
    value: str


class DkimPublic(ApiOut):
    domain: str
    selector: str
    dns_record: DnsRecord
    verified: bool
    verified_at: UtcDatetime | None = None


class SenderIdentityPublic(ApiOut):
    """An identity as the API returns it: never its DKIM private key, only the DNS record to publish."""

    id: str
    tenant_id: str
    club_id: str | None = Field(description="the club it belongs to; null: the whole tenant")
    name: str
    from_name: str | None = Field(description="the From header's display name")
    from_address: str | None = Field(description="the From address; its domain is the DKIM `d=`")
    reply_to: str | None
    sms_sender: str | None = Field(description="an E.164 number, a short code or an alphanumeric id")
    email_account_id: str | None
    sms_account_id: str | None
    dkim: DkimPublic | None
    # Whether a campaign may send as this identity: its email domain's DKIM record was verified
    # (an SMS-only identity needs none).
    verified: bool
    verified_at: UtcDatetime | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None


class SenderIdentitiesPublic(Page[SenderIdentityPublic]):
    pass
