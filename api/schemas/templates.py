"""Template schemas: EMAIL (`subject`, `html`, `text`) or SMS (`body`), edits, and previews."""

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from api.schemas.common import ApiIn, ApiOut, Page, UtcDatetime
from api.schemas.customers import UNSTORABLE, NoNul, unstorable_path
from core.enums import Channel
from providers.rendering import MAX_TEMPLATE_CHARS
from providers.sms_encoding import sms_encoding

MAX_SMS_CHARS = 1600
MAX_SUBJECT_CHARS = 998  # one RFC 5322 header line

Content = Annotated[str, Field(max_length=MAX_TEMPLATE_CHARS), NoNul]
Subject = Annotated[str, Field(max_length=MAX_SUBJECT_CHARS), NoNul]
SmsBody = Annotated[str, Field(max_length=MAX_SMS_CHARS), NoNul]
Name = Annotated[str, Field(min_length=1, max_length=200), NoNul]
ClubId = Annotated[str, Field(max_length=100), NoNul]

EMAIL_FIELDS = ("subject", "html", "text")
SMS_FIELDS = ("body",)
CHANNEL_FIELDS = {Channel.EMAIL: EMAIL_FIELDS, Channel.SMS: SMS_FIELDS}


def content_errors(channel: Channel, content: dict[str, Any]) -> list[dict[str, str]]:
    """What a template's content lacks for its channel (`content`: field -> value)."""
    errors: list[dict[str, str]] = []
    if channel == Channel.EMAIL:
        if not content.get("subject"):
            errors.append({"path": "$.subject", "message": "an EMAIL template needs a subject"})
        if not content.get("html") and not content.get("text"):
            errors.append({"path": "$.html", "message": "an EMAIL template needs html, text or both"})
    elif not content.get("body"):
        errors.append({"path": "$.body", "message": "an SMS template needs a body"})
    return errors


def foreign_field_errors(channel: Channel, sent: dict[str, Any]) -> list[dict[str, str]]:
    """Fields of the other channel that were sent (with a value)."""
    other = SMS_FIELDS if channel == Channel.EMAIL else EMAIL_FIELDS
    return [
        {"path": f"$.{name}", "message": f"not a field of {channel.value} templates"}
        for name in other
        if sent.get(name) is not None
    ]


class TemplateCreate(ApiIn):
    tenant_id: Annotated[str, Field(min_length=1, max_length=100), NoNul]
    club_id: ClubId | None = None
    name: Name
    channel: Channel
    subject: Subject | None = None
    html: Content | None = None
    text: Content | None = Field(default=None, description="EMAIL: left out, it is derived from html")
    body: SmsBody | None = None

    def shape_errors(self) -> list[dict[str, str]]:
        """Fields of the other channel, and the ones this channel requires."""
        fields = {name: getattr(self, name) for name in (*EMAIL_FIELDS, *SMS_FIELDS)}
        return foreign_field_errors(self.channel, fields) + content_errors(self.channel, fields)


class TemplateUpdate(ApiIn):
    """Fields to change; those left out keep their value, `text: null` makes it derived from html.

    A change of content makes a new version; a send already running keeps the version it pinned.
    """

    name: Name | None = None
    club_id: ClubId | None = None
    subject: Subject | None = None
    html: Content | None = None
    text: Content | None = None
    body: SmsBody | None = None


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
    """The personalised email as sent, before tracking rewrites its links and adds the open pixel
    and the unsubscribe footer; `text` is derived from `html` when the template has none."""

    subject: str
    html: str
    text: str


class SmsPreview(ApiOut):
    body: str
    encoding: str = Field(description="GSM-7 or UCS-2")
    segments: int = Field(description="messages the body takes (160/153 GSM-7, 70/67 UCS-2 units)")


class TemplateSummary(ApiOut):
    id: str
    tenant_id: str
    club_id: str | None
    name: str
    channel: Channel
    subject: str | None
    version: int
    created_at: UtcDatetime
    updated_at: UtcDatetime


class TemplatePublic(TemplateSummary):
    html: str | None
    text: str | None
    text_from_html: bool = Field(description="EMAIL without text: the text part is derived from html")
    body: str | None
    encoding: str | None = Field(description="SMS: GSM-7 or UCS-2, for the body as written")
    segments: int | None = Field(description="SMS: messages the body as written takes; see the preview")

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, stored: Any) -> Any:
        """From a stored template (read by attribute): what its content implies besides itself."""
        if isinstance(stored, dict):
            return stored
        sms = sms_encoding(stored.body) if stored.channel == Channel.SMS and stored.body else None
        return {
            **{name: getattr(stored, name) for name in TemplateSummary.model_fields},
            "html": stored.html,
            "text": stored.text,
            "text_from_html": stored.channel == Channel.EMAIL and not stored.text and bool(stored.html),
            "body": stored.body,
            "encoding": sms.encoding if sms else None,
            "segments": sms.segments if sms else None,
        }


class TemplatesPublic(Page[TemplateSummary]):
    """The list leaves out the content (html can be large); `GET /templates/:id` has it."""
