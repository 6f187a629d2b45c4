"""Builds the MIME message of one campaign email: multipart text + HTML, personalised and tracked.

Tracking is applied here, so every email that leaves the service carries it:
- every absolute http(s) link (`<a>`/`<area>` hrefs in the HTML, bare URLs in the text part) that
  the template's author wrote (`providers.template_links`: a URL that came from a recipient's
  fields is left as it is, never signed) is rewritten to `{public_url}/t/c/{token}`; the token
  carries the link id and the original URL, signed (see `providers.tracking`). Link ids are
  `link_1`, `link_2`, ... in order of each distinct URL's first appearance (HTML first, then
  text), so the same URL has the same id in both parts;
- a 1x1 pixel `{public_url}/t/o/{token}` is added to the HTML;
- an unsubscribe link `{public_url}/t/u/{token}` is added to both parts and announced in
  `List-Unsubscribe` with `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
Rewriting is one forward pass per part (`providers.html_scan` for the HTML, one precompiled
regular expression for the text), in time linear in its length: a page renders hundreds, and a
tenant's broken html must not cost everybody else quadratic time.
"""

import binascii
import html
import re
import secrets
import time
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from email.header import Header
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from functools import lru_cache
from typing import Any, Protocol

from core.settings import Settings
from providers.html_scan import EndTag, HtmlScanner, StartTag
from providers.rendering import render
from providers.template_links import TRAILING_PUNCTUATION, URL_IN_TEXT, TemplateLinks, template_links
from providers.tracking import TrackingLinks, is_trackable_url, tracking_links

_LINK_TAGS = frozenset({"a", "area"})
_BODY = frozenset({"body"})  # where the footer goes


MAX_SUBJECT = 300


@dataclass(frozen=True)
class EmailParts:
    """The rendered subject and parts of one email, and the links its template allows to track.

    `links` None means the parts were not rendered from a template (the service or a test wrote
    them): every http(s) link in them is the writer's own and tracked.
    """

    subject: str
    html: str | None
    text: str | None
    links: TemplateLinks | None = None


@dataclass(frozen=True)
class EmailEnvelope:
    delivery_id: str
    campaign_id: str
    tenant_id: str
    customer_id: str
    sender: str
    to: str
    # A copy that is not a campaign's message: "Test" (README "Test sends") or "Seed" (a seed
    # list's copy), sent with an `X-Campaigns-<mark>: true` header.
    mark: str | None = None
    # The identity's Reply-To (docs/tenants-and-providers.md); None: no header.
    reply_to: str | None = None


class Render(Protocol):
    def __call__(self, source: str | None, context: dict[str, Any], *, html: bool = False) -> str: ...


def render_parts(
    subject: str | None,
    html: str | None,
    text: str | None,
    ctx: dict[str, Any],
    render_with: Render = render,
) -> EmailParts:
    """The parts rendered for one recipient, with the links their template's author wrote (only
    those are tracked: what the recipient's fields put in the email is never signed).
    `render_with`: Jinja's sandbox (in a render process), or a plain template's renderer
    (providers.plain_templates)."""
    return EmailParts(
        # One line, and short enough that the header stays far below SMTP's 998-octet limit.
        subject=render_with(subject, ctx).replace("\r", " ").replace("\n", " ").strip()[:MAX_SUBJECT],
        html=render_with(html, ctx, html=True) if html else None,
        text=render_with(text, ctx) if text else None,
        links=template_links(html, text),
    )


class _MessageLinks:
    """Rewrites the links of one message, numbering distinct URLs in order of first appearance."""

    def __init__(self, links: TrackingLinks, envelope: EmailEnvelope, allowed: TemplateLinks | None) -> None:
        self._links = links
        self._allowed = allowed
        self._campaign = envelope.campaign_id
        self._delivery = envelope.delivery_id
        self._targets: dict[str, str] = {}  # URL -> its click-tracking URL, in order of appearance

    def tracked(self, url: str) -> str | None:
        """The click-tracking URL for `url`, or None when it is not to be tracked.

        A URL repeated in the message is signed once (its token is the same every time).
        """
        target = self._targets.get(url)
        if target is not None:
            return target
        if not is_trackable_url(url) or (self._allowed is not None and not self._allowed.allows(url)):
            return None
        link_id = f"link_{len(self._targets) + 1}"
        target = self._targets[url] = self._links.click_url(self._campaign, self._delivery, link_id, url)
        return target

    def rewrite_html(self, body: str) -> tuple[str, int]:
        """The html with its links rewritten, and where the footer goes in it.

        The footer goes before the last `</body>` end tag; without one, at the end, unless the
        html ends inside something it never closes (a comment, a tag, a `<textarea>`...), where
        appended markup would be swallowed: then just before that.
        """
        scanner = HtmlScanner(body, _LINK_TAGS, _BODY)
        pieces: list[str] = []
        copied = 0  # body[:copied] is in `pieces`
        shift = 0  # how much longer the output is than the body, up to `copied`
        body_end: int | None = None
        for token in scanner.tokens():
            if isinstance(token, EndTag):
                if token.name == "body":
                    body_end = token.start + shift
                continue
            if not isinstance(token, StartTag) or token.name not in _LINK_TAGS:
                continue
            href = scanner.attribute(token, "href")
            if href is None or href.value is None:
                continue
            target = self.tracked(html.unescape(href.value).strip())
            if target is None:
                continue
            quoted = f'"{target}"'
            pieces.append(body[copied : href.start])
            pieces.append(quoted)
            shift += len(quoted) - (href.end - href.start)
            copied = href.end
        pieces.append(body[copied:])
        rewritten = "".join(pieces)
        if body_end is not None:
            return rewritten, body_end
        if scanner.open_from is not None:
            return rewritten, scanner.open_from + shift
        return rewritten, len(rewritten)

    def _text_url(self, match: re.Match[str]) -> str:
        url = match.group(0)
        stripped = url.rstrip(TRAILING_PUNCTUATION)
        target = self.tracked(stripped)
        return url if target is None else target + url[len(stripped) :]

    def rewrite_text(self, body: str) -> str:
        return URL_IN_TEXT.sub(self._text_url, body)


def tracked_parts(parts: EmailParts, envelope: EmailEnvelope, links: TrackingLinks) -> tuple[EmailParts, str]:
    """The parts with links rewritten, pixel and unsubscribe link added; and the unsubscribe URL."""
    rewriter = _MessageLinks(links, envelope, parts.links)
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
        rewritten, at = rewriter.rewrite_html(parts.html)
        html_body = rewritten[:at] + footer + rewritten[at:]
    text_body = rewriter.rewrite_text(parts.text or "")
    text_body = f"{text_body.rstrip()}\n\n--\nUnsubscribe: {unsubscribe}\n".lstrip()
    return EmailParts(parts.subject, html_body, text_body, parts.links), unsubscribe


@dataclass(frozen=True)
class WireEmail:
    """The bytes put on the wire, with the envelope addresses and the Message-ID."""

    sender: str
    to: str
    message_id: str
    data: bytes


CRLF = "\r\n"


@lru_cache(maxsize=2)
def _date(second: int) -> str:
    """The Date header's value for that second (formatted once per second, not per message)."""
    return formatdate(second, usegmt=True)


def _header(value: str) -> str:
    """One header value on one line: CR/LF can never inject a header; non-ASCII is RFC 2047."""
    value = value.replace("\r", " ").replace("\n", " ")
    return value if value.isascii() else Header(value, "utf-8").encode(linesep=" ")


def _qp(body: str) -> str:
    """UTF-8 quoted-printable with CRLF lines (binascii's C encoder; readable and 7-bit safe)."""
    normalised = body.replace("\r\n", "\n").replace("\r", "\n").replace("\n", CRLF)
    return binascii.b2a_qp(normalised.encode("utf-8"), istext=True).decode("ascii")


def _address_header(value: str) -> str:
    """`Name <addr>`: a non-ASCII display name is encoded, the address never is."""
    value = value.replace("\r", " ").replace("\n", " ")
    if value.isascii():
        return value
    name, address = parseaddr(value)
    return formataddr((name, address), charset="utf-8") if address else _header(value)


def _text_part(subtype: str, body: str) -> str:
    return (
        f"Content-Type: text/{subtype}; charset=utf-8{CRLF}"
        f"Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}{_qp(body)}"
    )


def wire_email(envelope: EmailEnvelope, parts: EmailParts, settings: Settings) -> WireEmail:
    """The message as sent, written directly as MIME text.

    The email package's generator (and even more its header registry) costs milliseconds per
    message, the single largest CPU cost of sending; this builds the same multipart/alternative
    structure with C-speed quoted-printable. Headers are single-line ASCII, so the long signed
    `List-Unsubscribe` URL is never folded or encoded (RFC 8058 clients need it verbatim).
    Tracking links are signed with `settings.tracking_secret`.
    """
    links = tracking_links(settings.public_url, settings.tracking_secret)
    tracked, unsubscribe = tracked_parts(parts, envelope, links)
    domain = envelope.sender.rsplit("@", 1)[-1].strip(">") or "campaigns.local"
    message_id = make_msgid(idstring=envelope.delivery_id, domain=domain)
    headers = [
        f"From: {_address_header(envelope.sender)}",
        f"To: {_address_header(envelope.to)}",
        f"Subject: {_header(tracked.subject)}",
        f"Date: {_date(int(time.time()))}",
        f"Message-ID: {message_id}",
        f"X-Campaign-Id: {_header(envelope.campaign_id)}",
        f"X-Delivery-Id: {_header(envelope.delivery_id)}",
        # Postmark echoes X-PM-Metadata-* in its webhooks (its own MessageID is not ours); other
        # relays pass it through unread (docs/provider-webhooks.md, "Correlation").
        f"X-PM-Metadata-deliveryId: {_header(envelope.delivery_id)}",
        f"List-Unsubscribe: <{unsubscribe}>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "MIME-Version: 1.0",
    ]
    if envelope.reply_to:
        headers.append(f"Reply-To: {_address_header(envelope.reply_to)}")
    if envelope.mark:
        headers.append(f"X-Campaigns-{envelope.mark}: true")
    text = tracked.text or ""
    if tracked.html:
        boundary = f"=_alt_{secrets.token_hex(12)}"  # never occurs in QP output (no '=_' there)
        headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        body = (
            f"--{boundary}{CRLF}{_text_part('plain', text)}{CRLF}"
            f"--{boundary}{CRLF}{_text_part('html', tracked.html)}{CRLF}"
            f"--{boundary}--{CRLF}"
        )
        data = CRLF.join(headers) + CRLF + CRLF + body
    else:
        data = CRLF.join(headers) + CRLF + _text_part("plain", text) + CRLF
    return WireEmail(envelope.sender, envelope.to, message_id, data.encode("ascii"))


def build_email(envelope: EmailEnvelope, parts: EmailParts, settings: Settings) -> EmailMessage:
    """The sent message, parsed back (previews and tests read exactly what goes on the wire)."""
    wire = wire_email(envelope, parts, settings)
    parsed = message_from_bytes(wire.data, policy=email_policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed
