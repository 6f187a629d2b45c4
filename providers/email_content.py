"""Builds the MIME message of one campaign email: multipart text + HTML, personalised.

Tracking (pixel, link rewriting, unsubscribe headers) is applied here too, so every email that
leaves the service carries it.
"""

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

from providers.rendering import render


@dataclass(frozen=True)
class EmailParts:
    subject: str
    html: str | None
    text: str | None


@dataclass(frozen=True)
class EmailEnvelope:
    delivery_id: str
    campaign_id: str
    tenant_id: str
    customer_id: str
    sender: str
    to: str


def render_parts(
    subject: str | None, html: str | None, text: str | None, ctx: dict[str, object]
) -> EmailParts:
    return EmailParts(
        subject=render(subject, ctx).replace("\r", " ").replace("\n", " ").strip(),
        html=render(html, ctx, html=True) if html else None,
        text=render(text, ctx) if text else None,
    )


def build_email(envelope: EmailEnvelope, parts: EmailParts) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = envelope.sender
    msg["To"] = envelope.to
    msg["Subject"] = parts.subject
    domain = envelope.sender.rsplit("@", 1)[-1].strip(">") or "campaigns.local"
    msg["Message-ID"] = make_msgid(idstring=envelope.delivery_id, domain=domain)
    msg["X-Campaign-Id"] = envelope.campaign_id
    msg["X-Delivery-Id"] = envelope.delivery_id
    msg.set_content(parts.text or "")
    if parts.html:
        msg.add_alternative(parts.html, subtype="html")
    return msg
