"""Customer schemas: the fields of contract §7, their validation, and the public shape.

Upsert semantics: a field you send is written as sent (`attributes` replaces the whole object); a
field you leave out keeps its current value, or its default for a new customer.
"""

import json
import re
from typing import Annotated, Any

from pydantic import Field, field_validator

from api.schemas.common import ApiIn, ApiOut, PageMeta, UtcDatetime

MAX_IMPORT_ROWS = 100_000
MAX_ATTRIBUTES_BYTES = 64 * 1024

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# Deliberately simple (no DNS, no quoted local parts): one @, no spaces, a dot in the domain.
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.][^@\s]*\.[^@\s.]+$")

ExternalId = Annotated[str, Field(min_length=1, max_length=200)]
TenantId = Annotated[str, Field(min_length=1, max_length=100)]
ClubId = Annotated[str, Field(max_length=100)]
PersonName = Annotated[str, Field(max_length=200)]


def check_email(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > 320 or not EMAIL.match(value):
        raise ValueError("not a valid email address")
    return value


def check_phone(value: str | None) -> str | None:
    if value is None:
        return None
    if not E164.match(value):
        raise ValueError("phone must be E.164, like +27821234567")
    return value


def check_attributes(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_ATTRIBUTES_BYTES:
        raise ValueError(f"attributes are {size} bytes of JSON; at most {MAX_ATTRIBUTES_BYTES} are allowed")
    return value


class CustomerFields(ApiIn):
    """One customer as imported: everything but the tenant."""

    external_id: ExternalId
    email: str | None = None
    phone: str | None = None
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    club_id: ClubId | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    email_opt_in: bool = True
    sms_opt_in: bool = True

    _email = field_validator("email")(check_email)
    _phone = field_validator("phone")(check_phone)
    _attributes = field_validator("attributes")(check_attributes)


class CustomerCreate(CustomerFields):
    tenant_id: TenantId


class CustomerImport(ApiIn):
    tenant_id: TenantId
    customers: Annotated[list[CustomerFields], Field(max_length=MAX_IMPORT_ROWS)]


class ImportResult(ApiOut):
    created: int
    updated: int
    total: int


class CustomerPublic(ApiOut):
    id: str
    tenant_id: str
    external_id: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    club_id: str | None
    attributes: dict[str, Any]
    email_opt_in: bool
    sms_opt_in: bool
    email_unsubscribed: bool
    sms_unsubscribed: bool
    email_bounced: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime


class CustomersPublic(ApiOut):
    data: list[CustomerPublic]
    meta: PageMeta
