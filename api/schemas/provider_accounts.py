"""Provider accounts at the API edge (docs/tenants-and-providers.md).

`kind: "SMTP"`: a relay (`host`, `port`, `starttls`, optional `username` and `password`).
`kind: "SMS"`: `provider: "twilio-compatible"` with the messages endpoint `url`, an `authToken`,
and an `accountSid` (HTTP Basic `accountSid:authToken`, as Twilio wants) or none (a bearer token).
Credentials are sealed at rest and never returned: a response says `hasPassword`/`hasAuthToken`.
"""

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from api.schemas.common import ApiIn, ApiOut, NoNul, Page, UtcDatetime

Name = Annotated[str, Field(min_length=1, max_length=200), NoNul]
Host = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.\-:\[\]]+$")]
Secret = Annotated[str, Field(min_length=1, max_length=1000), NoNul]
SMS_PROVIDERS = ("twilio-compatible",)


def check_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("url must be an absolute http(s) URL")
    return value


class SmtpFields(ApiIn):
    host: Host
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    username: Annotated[str, Field(max_length=320), NoNul] | None = None
    password: Secret | None = None


class SmsFields(ApiIn):
    provider: Literal["twilio-compatible"] = "twilio-compatible"
    url: Annotated[str, Field(max_length=2000), NoNul]
    account_sid: Annotated[str, Field(max_length=100), NoNul] | None = None
    auth_token: Secret

    _url = field_validator("url")(check_url)


class ProviderAccountCreate(ApiIn):
    tenant_id: Annotated[str, Field(min_length=1, max_length=100), NoNul]
    name: Name
    kind: Literal["SMTP", "SMS"]
    smtp: SmtpFields | None = None
    sms: SmsFields | None = None


class SmtpPatch(ApiIn):
    host: Host | None = None
    port: int | None = Field(None, ge=1, le=65535)
    starttls: bool | None = None
    username: Annotated[str, Field(max_length=320), NoNul] | None = None
    password: Secret | None = None


class SmsPatch(ApiIn):
    url: Annotated[str, Field(max_length=2000), NoNul] | None = None
    account_sid: Annotated[str, Field(max_length=100), NoNul] | None = None
    auth_token: Secret | None = None

    _url = field_validator("url")(check_url)


class ProviderAccountPatch(ApiIn):
    """JSON merge-patch of the account's own kind: a field sent is set (`null` clears an optional
    one), a field left out is kept; a credential is replaced only when sent."""

    name: Name | None = None
    smtp: SmtpPatch | None = None
    sms: SmsPatch | None = None


class SmtpPublic(ApiOut):
    host: str
    port: int
    starttls: bool
    username: str | None = None
    has_password: bool


class SmsPublic(ApiOut):
    provider: str
    url: str
    account_sid: str | None = None
    has_auth_token: bool


class ProviderAccountPublic(ApiOut):
    id: str
    tenant_id: str
    name: str
    kind: str
    smtp: SmtpPublic | None = None
    sms: SmsPublic | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ProviderAccountsPublic(Page[ProviderAccountPublic]):
    pass
