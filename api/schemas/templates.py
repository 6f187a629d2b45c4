"""Template schemas: EMAIL (`subject`, `html`, `text`) or SMS (`body`), and previews."""

from typing import Annotated, Any

from pydantic import Field, field_validator

from api.schemas.common import ApiIn, ApiOut, PageMeta, UtcDatetime
from api.schemas.customers import UNSTORABLE, NoNul, unstorable_path
from core.enums import Channel
from providers.rendering import MAX_TEMPLATE_CHARS

MAX_SMS_CHARS = 1600
MAX_SUBJECT_CHARS = 998  # one RFC 5322 header line

Content = Annotated[str, Field(max_length=MAX_TEMPLATE_CHARS), NoNul]

EMAIL_FIELDS = ("subject", "html", "text")
SMS_FIELDS = ("body",)


class TemplateCreate(ApiIn):
    tenant_id: Annotated[str, Field(min_length=1, max_length=100), NoNul]
    club_id: Annotated[str, Field(max_length=100), NoNul] | None = None
    name: Annotated[str, Field(min_length=1, max_length=200), NoNul]
    channel: Channel
    subject: Annotated[str, Field(max_length=MAX_SUBJECT_CHARS), NoNul] | None = None
    html: Content | None = None
    text: Content | None = None
    body: Annotated[str, Field(max_length=MAX_SMS_CHARS), NoNul] | None = None

    def shape_errors(self) -> list[dict[str, str]]:
        """Fields of the other channel, and the ones this channel requires."""
        errors: list[dict[str, str]] = []
        other = SMS_FIELDS if self.channel == Channel.EMAIL else EMAIL_FIELDS
        for name in other:
            if getattr(self, name) is not None:
                errors.append(
                    {"path": f"$.{name}", "message": f"not a field of {self.channel.value} templates"}
                )
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

    @field_validator("attributes")
    @classmethod
    def _renderable(cls, value: dict[str, Any]) -> dict[str, Any]:
        where = unstorable_path(value, "attributes")
        if where is not None:
            raise ValueError(f"{where} {UNSTORABLE}")
        return value


class PreviewRequest(ApiIn):
    customer_id: Annotated[str, Field(min_length=1, max_length=40), NoNul] | None = None
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
