"""Customer schemas: the fields of README "Importing customers", their validation, and the public shape.

Upsert semantics: a field you send is written as sent (`attributes` replaces the whole object); a
field you leave out keeps its current value, or its default for a new customer.

Emails and phones are stored in their one canonical form (core.addresses): a bare email address,
lower-cased, or an E.164 phone checked with the `phonenumbers` library. A display name, a comment
or anything else that is not a bare address is a 422 saying why. Numbers of a possible length that
are not (yet) assigned, like the fictional +1 555 01xx range, are accepted: no library can tell
whether a number is in service.
"""

import json
from typing import Annotated, Any

from pydantic import Field, field_validator

from api.schemas.common import ApiIn, ApiOut, JsonLimits, Page, UtcDatetime, scan_json, within_limits
from api.schemas.common import NoNul as NoNul  # re-exported: other schemas and routes import it here
from core.addresses import canonical_email, canonical_phone
from core.enums import Channel

MAX_ATTRIBUTES_BYTES = 64 * 1024


# Postgres refuses the NUL character in text and jsonb (NoNul, in api.schemas.common), and
# NaN/Infinity and unpaired surrogates in jsonb: they must be a 422 here, not a 500 there.
UNSTORABLE = "holds a NUL character (\\u0000), an unpaired surrogate or NaN/Infinity: it cannot be stored"

# Attributes are shown on every customer page and compared by segment filters: a flat-ish record,
# not a document store. The bounds keep each row cheap to store and always serialisable; 1,000
# values leave room for a CSV import's widest header (api.schemas.customer_import.MAX_CSV_COLUMNS).
ATTRIBUTE_LIMITS = JsonLimits(depth=8, nodes=1000, key_chars=200)


def unstorable_path(value: Any, path: str = "") -> str | None:
    """Where in a JSON value a key or string, or a number, cannot be stored; None if all can."""
    problem = scan_json(value).problem
    return None if problem is None else path + problem[0]


ExternalId = Annotated[str, Field(min_length=1, max_length=200), NoNul]
TenantId = Annotated[str, Field(min_length=1, max_length=100), NoNul]
ClubId = Annotated[str, Field(max_length=100), NoNul]
PersonName = Annotated[str, Field(max_length=200), NoNul]


def check_email(value: str | None) -> str | None:
    """The canonical form of an email (core.addresses), so that it is stored and compared as one."""
    return None if value is None else canonical_email(value)


def check_phone(value: str | None) -> str | None:
    """The canonical E.164 form of a phone (core.addresses)."""
    return None if value is None else canonical_phone(value)


def check_attributes(value: dict[str, Any]) -> dict[str, Any]:
    scan = scan_json(value, ATTRIBUTE_LIMITS)
    if scan.problem is not None:
        where, message = scan.problem
        raise ValueError(f"attributes{where} {message}")
    if scan.chars * 6 > MAX_ATTRIBUTES_BYTES:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_ATTRIBUTES_BYTES:
            raise ValueError(
                f"attributes are {size} bytes of JSON; at most {MAX_ATTRIBUTES_BYTES} are allowed"
            )
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


class CustomerUnsubscribe(ApiIn):
    """`channel` EMAIL or SMS; left out, every channel."""

    channel: Channel | None = None


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

    @field_validator("attributes", mode="before")
    @classmethod
    def _showable(cls, value: Any) -> Any:
        # Rows stored before attributes were bounded may nest deeper than a response can show.
        return within_limits(value or {}, ATTRIBUTE_LIMITS)


class CustomersPublic(Page[CustomerPublic]):
    """Newest first."""
