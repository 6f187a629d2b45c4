"""Builds the MIME message of one campaign email: multipart text + HTML, personalised and tracked.

Tracking is applied here, so every email that leaves the service carries it:
- every absolute http(s) link (`<a>`/`<area>` hrefs in the HTML, bare URLs in the text part) is
  rewritten to `{public_url}/t/c/{token}`; the token carries the link id and the original URL,
  signed (see `providers.tracking`). Link ids are `link_1`, `link_2`, ... in order of each distinct
  URL's first appearance (HTML first, then text), so the same URL has the same id in both parts;
- a 1x1 pixel `{public_url}/t/o/{token}` is added to the HTML;
- an unsubscribe link `{public_url}/t/u/{token}` is added to both parts and announced in
  `List-Unsubscribe` with `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
Rewriting is one pass of precompiled regular expressions per part: a page renders hundreds.
"""

import html
import re
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formatdate, make_msgid

from core.settings import Settings
from providers.rendering import render
from providers.tracking import TrackingLinks, is_trackable_url, tracking_links

# An <a ...> or <area ...> start tag; quoted attribute values may contain '>'.
_LINK_TAG = re.compile(r"""<(?:a|area)\b(?:[^>"']|"[^"]*"|'[^']*')*>""", re.IGNORECASE)
_HREF = re.compile(r"""(\shref\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_TEXT_URL = re.compile(r"""https?://[^\s<>"']+""", re.IGNORECASE)
_TRAILING = ".,;:!?)]}"


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


class _MessageLinks:
    """Rewrites the links of one message, numbering distinct URLs in order of first appearance."""

    def __init__(self, links: TrackingLinks, envelope: EmailEnvelope) -> None:
        self._links = links
        self._campaign = envelope.campaign_id
        self._delivery = envelope.delivery_id
        self._ids: dict[str, str] = {}

    def tracked(self, url: str) -> str | None:
        if not is_trackable_url(url):
            return None
        link_id = self._ids.get(url)
        if link_id is None:
            link_id = self._ids[url] = f"link_{len(self._ids) + 1}"
        return self._links.click_url(self._campaign, self._delivery, link_id, url)

    def _href(self, match: re.Match[str]) -> str:
        raw = match.group(2) if match.group(2) is not None else match.group(3)
        if raw is None:
            raw = match.group(4)
        target = self.tracked(html.unescape(raw).strip())
        if target is None:
            return match.group(0)
        return f'{match.group(1)}"{target}"'

    def _tag(self, match: re.Match[str]) -> str:
        return _HREF.sub(self._href, match.group(0), count=1)

    def rewrite_html(self, body: str) -> str:
        return _LINK_TAG.sub(self._tag, body)

    def _text_url(self, match: re.Match[str]) -> str:
        url = match.group(0)
        stripped = url.rstrip(_TRAILING)
        target = self.tracked(stripped)
        return url if target is None else target + url[len(stripped) :]

    def rewrite_text(self, body: str) -> str:
        return _TEXT_URL.sub(self._text_url, body)


def _before_body_end(body: str, addition: str) -> str:
    """Insert before the last `</body>`, or append when the HTML has none."""
    ends = list(_BODY_END.finditer(body))
    if not ends:
        return body + addition
    at = ends[-1].start()
    return body[:at] + addition + body[at:]


def tracked_parts(parts: EmailParts, envelope: EmailEnvelope, links: TrackingLinks) -> tuple[EmailParts, str]:
    """The parts with links rewritten, pixel and unsubscribe link added; and the unsubscribe URL."""
    rewriter = _MessageLinks(links, envelope)
    unsubscribe = links.unsubscribe_url(envelope.campaign_id, envelope.delivery_id)
    html_body = None
    if parts.html:
        pixel = links.open_url(envelope.campaign_id, envelope.delivery_id)
        footer = (
            '<p style="font-size:12px;color:#777777">No longer want these emails? '
            f'<a href="{unsubscribe}">Unsubscribe</a></p>'
            f'<img src="{pixel}" width="1" height="1" alt="" '
            'style="display:block;border:0;width:1px;height:1px" />'
        )
        html_body = _before_body_end(rewriter.rewrite_html(parts.html), footer)
    text_body = rewriter.rewrite_text(parts.text or "")
    text_body = f"{text_body.rstrip()}\n\n--\nUnsubscribe: {unsubscribe}\n".lstrip()
    return EmailParts(subject=parts.subject, html=html_body, text=text_body), unsubscribe


@dataclass(frozen=True)
class WireEmail:
    """The bytes put on the wire, with the envelope addresses and the Message-ID."""

    sender: str
    to: str
    message_id: str
    data: bytes


_QP_UTF8 = Charset("utf-8")
_QP_UTF8.body_encoding = QP  # readable bodies; base64 would hide them from humans and filters
_WIRE_POLICY = compat32.clone(linesep="\r\n", max_line_length=None)


def _header(value: str) -> str:
    return value if value.isascii() else Header(value, "utf-8").encode()


def wire_email(envelope: EmailEnvelope, parts: EmailParts, settings: Settings) -> WireEmail:
    """The message as sent, built with the compat32 MIME classes: several times cheaper than
    `EmailMessage` (whose header registry parses every header), which matters at hundreds of
    messages a second. Tracking links are signed with `settings.tracking_secret`."""
    links = tracking_links(settings.public_url, settings.tracking_secret)
    tracked, unsubscribe = tracked_parts(parts, envelope, links)
    text_part = MIMEText(tracked.text or "", "plain", _QP_UTF8)  # type: ignore[arg-type]
    if tracked.html:
        msg: MIMEMultipart | MIMEText = MIMEMultipart(
            "alternative",
            _subparts=[text_part, MIMEText(tracked.html, "html", _QP_UTF8)],  # type: ignore[arg-type]
        )
    else:
        msg = text_part
    domain = envelope.sender.rsplit("@", 1)[-1].strip(">") or "campaigns.local"
    message_id = make_msgid(idstring=envelope.delivery_id, domain=domain)
    msg["From"] = _header(envelope.sender)
    msg["To"] = envelope.to
    msg["Subject"] = _header(tracked.subject)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id
    msg["X-Campaign-Id"] = envelope.campaign_id
    msg["X-Delivery-Id"] = envelope.delivery_id
    # compat32 never folds an ASCII value that has no whitespace: the long signed URL stays on
    # one line, as RFC 8058 clients expect (an encoded-word there would not be decoded).
    msg["List-Unsubscribe"] = f"<{unsubscribe}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return WireEmail(envelope.sender, envelope.to, message_id, msg.as_bytes(policy=_WIRE_POLICY))


def build_email(envelope: EmailEnvelope, parts: EmailParts, settings: Settings) -> EmailMessage:
    """The sent message, parsed back (previews and tests read exactly what goes on the wire)."""
    wire = wire_email(envelope, parts, settings)
    parsed = message_from_bytes(wire.data, policy=email_policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed
