"""Template schemas: EMAIL (`subject`, `html`, `text`) or SMS (`body`), and previews."""

from typing import Annotated, Any

from pydantic import Field

from api.schemas.common import ApiIn, ApiOut, PageMeta, UtcDatetime
from core.enums import Channel
from providers.rendering import MAX_TEMPLATE_CHARS

MAX_SMS_CHARS = 1600
MAX_SUBJECT_CHARS = 998  # one RFC 5322 header line

Content = Annotated[str, Field(max_length=MAX_TEMPLATE_CHARS)]

EMAIL_FIELDS = ("subject", "html", "text")
SMS_FIELDS = ("body",)


class TemplateCreate(ApiIn):
    tenant_id: Annotated[str, Field(min_length=1, max_length=100)]
    club_id: Annotated[str, Field(max_length=100)] | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)]
    channel: Channel
    subject: Annotated[str, Field(max_length=MAX_SUBJECT_CHARS)] | None = None
    html: Content | None = None
    text: Content | None = None
    body: Annotated[str, Field(max_length=MAX_SMS_CHARS)] | None = None

    def shape_errors(self) -> list[dict[str, str]]:
        """Fields of the other channel, and the ones this channel requires."""
        errors: list[dict[str, str]] = []
        other = SMS_FIELDS if self.channel == Channel.EMAIL else EMAIL_FIELDS
        for name in other:
            if getattr(self, name) is not None:
                errors.append({"path": f"$.{name}", "message": f"not a field of {self.channel.value} templates"})
        if self.channel == Channel.EMAIL:
            if not self.subject:
                errors.append({"path": "$.subject", "message": "an EMAIL template needs a subject"})
            if not self.html and not self.text:
                errors.append({"path": "$.html", "message": "an EMAIL template needs html, text or both"})
        elif not self.body:
            errors.append({"path": "$.body", "message": "an SMS template needs a body"})
        return errors

    def sources(self) -> dict[str, str]:
        """The Jinja sources to check, by field name."""
        names = EMAIL_FIELDS if self.channel == Channel.EMAIL else SMS_FIELDS
        return {name: value for name in names if (value := getattr(self, name))}


class SampleRecipient(ApiIn):
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    club_id: str | None = None
    external_id: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class PreviewRequest(ApiIn):
    customer_id: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    sample: SampleRecipient | None = None


class EmailPreview(ApiOut):
    subject: str
    html: str
    text: str


class SmsPreview(ApiOut):
    body: str


class TemplateSummary(ApiOut):
    id: str
    tenant_id: str
    club_id: str | None
    name: str
    channel: Channel
    subject: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class TemplatePublic(TemplateSummary):
    html: str | None
    text: str | None
    body: str | None


class TemplatesPublic(ApiOut):
    """The list leaves out the content (html can be large); `GET /templates/:id` has it."""

    data: list[TemplateSummary]
    meta: PageMeta
