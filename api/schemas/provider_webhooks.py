"""Inbound provider webhook registrations (README "Provider webhooks").

Each provider verifies its requests its own way, so each needs its own credential: Twilio the
account's auth token (`secret`), SendGrid the signed event webhook's verification key
(`publicKey`), Mailgun the webhook signing key (`secret`), Postmark the Basic credentials put on
the webhook URL (`username` + `password`), SES the SNS topic the notifications come from
(`topicArn`). Credentials are sealed at rest and never returned.
"""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from api.schemas.common import ApiIn, ApiOut, NoNul, Page, UtcDatetime
from api.schemas.customers import TenantId
from providers.webhooks import sendgrid

Provider = Literal["twilio", "sendgrid", "mailgun", "postmark", "ses"]
Credential = Annotated[str, Field(min_length=1, max_length=4096), NoNul]
TopicArn = Annotated[
    str, Field(max_length=300, pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]+$")
]

# The credential fields each provider needs (and the only ones it accepts).
NEEDS: dict[str, tuple[str, ...]] = {
    "twilio": ("secret",),
    "sendgrid": ("public_key",),
    "mailgun": ("secret",),
    "postmark": ("username", "password"),
    "ses": ("topic_arn",),
}
_CREDENTIALS = ("secret", "public_key", "username", "password", "topic_arn")


class ProviderWebhookCreate(ApiIn):
    tenant_id: TenantId
    provider: Provider
    secret: Credential | None = Field(None, description="twilio: the auth token; mailgun: the signing key")
    public_key: Credential | None = Field(None, description="sendgrid: the base64 verification key")
    username: Annotated[str, Field(min_length=1, max_length=200), NoNul] | None = None
    password: Credential | None = Field(None, description="postmark: Basic credentials on the URL")
    topic_arn: TopicArn | None = Field(None, description="ses: the SNS topic the notifications come from")

    @model_validator(mode="after")
    def _credentials_of_provider(self) -> "ProviderWebhookCreate":
        needed = NEEDS[self.provider]
        missing = [n for n in needed if getattr(self, n) is None]
        extra = [n for n in _CREDENTIALS if n not in needed and getattr(self, n) is not None]
        if missing or extra:
            raise ValueError(f"{self.provider} takes exactly: {', '.join(needed)}")
        if self.provider == "postmark" and self.username is not None and ":" in self.username:
            raise ValueError("a Basic username has no ':'")
        if self.public_key is not None:
            sendgrid.public_key(self.public_key)  # ValueError: a 422
        return self

    def credentials(self) -> dict[str, str]:
        """What gets sealed: the provider's credential fields, camelCase."""
        names = {"public_key": "publicKey", "topic_arn": "topicArn"}
        return {names.get(n, n): getattr(self, n) for n in NEEDS[self.provider]}


class ProviderWebhookPublic(ApiOut):
    id: str
    tenant_id: str
    provider: Provider
    url: str = Field(description="Paste into the provider's console (Postmark: with the Basic credentials)")
    created_by: str | None
    created_at: UtcDatetime


class ProviderWebhooksPublic(Page[ProviderWebhookPublic]):
    """Newest first."""


class ProviderWebhookResult(ApiOut):
    """What a provider's request did: events in it, acted on, replays, and ones naming nothing of ours."""

    received: int
    recorded: int
    duplicates: int
    ignored: int
