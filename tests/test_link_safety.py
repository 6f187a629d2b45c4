"""Link tracking cannot be turned against the service or its other tenants.

- Reading html takes time linear in its length, however broken the html: the text part derived
  from html and the rewriting of links used to take tens of seconds for 100 KB of unclosed tags.
- Only URLs written in the template are signed into click-tracking redirects: a URL that comes
  from a recipient's fields stays as it was rendered, so nobody who can fill in a sign-up form
  gets a redirect to their own site on the service's domain.
"""

import pickle
import random
import re
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from providers.email_content import EmailEnvelope, EmailParts, render_parts, tracked_parts
from providers.html_scan import EndTag, HtmlScanner, StartTag
from providers.html_text import html_to_text
from providers.rendering import DERIVED_TEXT_CLOSE, DERIVED_TEXT_OPEN, recipient_context
from providers.template_links import TemplateLinks, template_links
from providers.tracking import LinkKind, TokenSigner, TrackingLinks
from tests.attack import api_process, unaffected
from tests.conftest import Stack, StackFactory
from tests.helpers import wait_for

SECRET = "s" * 40
LINKS = TrackingLinks("https://track.example.org", SECRET)
ENVELOPE = EmailEnvelope(
    "delivery_1", "campaign_1", "tenant_1", "customer_1", "club@example.com", "a@b.example"
)
EVIL = "https://evil.example/x"


def _clicks(
    body: str, base: str = "https://track.example.org", secret: str = SECRET
) -> list[tuple[str, str]]:
    """(link id, target URL) of every click-tracking link in `body`, in order."""
    signer = TokenSigner(secret)
    found = []
    for token in re.findall(re.escape(base) + r"/t/c/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)", body):
        claim = signer.verify(token, LinkKind.CLICK)
        assert claim is not None, token
        found.append((claim.link_id, claim.url))
    return found


def _send(html: str | None, text: str | None, **customer: Any) -> EmailParts:
    """Render a template for a recipient, then apply tracking as a send does."""
    parts = render_parts("Hi", html, text, recipient_context(customer))
    tracked, _ = tracked_parts(parts, ENVELOPE, LINKS)
    return tracked


# ---- linear time ------------------------------------------------------------------------------------

SMALL, LARGE = 50_000, 200_000


def _nested_links(size: int) -> str:
    count = size // 60
    return (
        '<a href="https://club.example/x">' * count
        + "https://club.example/x"
        + "<td>" * count
        + "</a>" * count
    )


# Each made CPython's html.parser, or the tag regular expression of the link rewriting, read the
# rest of the document again at every '<': quadratic time.
FAMILIES: dict[str, Callable[[int], str]] = {
    "unclosed quotes": lambda n: '<p>Hi</p><a href="https://club.example/">x</a>' + '<a "' * (n // 4),
    "tags without >": lambda n: "<p>Hi</p>" + "<a " * (n // 3),
    "attributes without >": lambda n: "<p>Hi</p>" + '<a href="https://club.example/" ' * (n // 32),
    "unclosed comments": lambda n: "<p>Hi</p>" + "<!--" * (n // 4),
    "end tag openers": lambda n: "<p>Hi</p>" + "</" * (n // 2),
    "nested links": _nested_links,
}


def _rewrite_links(html: str) -> None:
    tracked_parts(EmailParts("Hi", html, None), ENVELOPE, LINKS)


def _best_time(work: Callable[[str], object], html: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        work(html)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("reader", [html_to_text, _rewrite_links], ids=["html_to_text", "link rewriting"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_reading_broken_html_takes_linear_time(family: str, reader: Callable[[str], object]) -> None:
    build = FAMILIES[family]
    small = _best_time(reader, build(SMALL))
    assert small < 0.5, f"{family}: {small:.3f} s for {SMALL} characters"
    large = _best_time(reader, build(LARGE))
    print(f"{family}: {small * 1000:.1f} ms for {SMALL} chars, {large * 1000:.1f} ms for {LARGE}")
    assert large < 0.5, f"{family}: {large:.3f} s for {LARGE} characters"
    # Four times the input: about four times the time (quadratic would be sixteen).
    assert large < 8 * small + 0.01, f"{family}: {small:.4f} s, then {large:.4f} s for 4x the input"


def test_html_is_read_as_a_browser_tokenizes_it() -> None:
    html = (
        '<p><a title="a > b" href="https://club.example/a">a</a>'
        '<!-- <a href="https://club.example/comment">hidden</a> -->'
        "<script>var s = '<a href=\"https://club.example/script\">';</script>"
        "<A HREF=https://club.example/b>b</A>"
        '<a "href="https://club.example/not-an-href">c</a>'
        '<a href="https://club.example/c" href="https://club.example/second">d</a></p>'
    )
    tracked = _send(html, None)
    assert tracked.html is not None
    assert _clicks(tracked.html) == [
        ("link_1", "https://club.example/a"),
        ("link_2", "https://club.example/b"),
        ("link_3", "https://club.example/c"),
    ]
    for kept in ("comment", "script", "not-an-href", "second"):
        assert f"https://club.example/{kept}" in tracked.html
    assert tracked.html.startswith('<p><a title="a > b" href="https://track.example.org/t/c/')


def test_html_to_text_reads_broken_html_as_a_browser_does() -> None:
    html = (
        "<title>Offer <b>now</b></title><p>Hi &amp; welcome</p>"
        '<p><a href="https://club.example/1">one <a href="https://club.example/2">two</a></p>'
        "<p>Type: <textarea><b>bold?</b></textarea></p>"
        '<p>end</p><a href="https://club.example/3" title="never closed'
    )
    # Links do not nest (a new one ends the open one); a never-closed tag swallows the rest.
    assert html_to_text(html) == (
        "Hi & welcome\n\none (https://club.example/1)two (https://club.example/2)\n\n"
        "Type: <b>bold?</b>\n\nend"
    )


def test_scanning_only_some_tags_finds_what_a_full_scan_finds() -> None:
    """The bulk skipping of link rewriting agrees with the token by token scan (random snippets,
    always the same ones)."""
    pieces = [
        "<", ">", "/", '"', "'", "=", " ", "a", "b", "href", "!", "-", "?", "<a ", "</a>", "<!--", "-->",
        "--!>", "<!-->", "<script>", "</script>", "<title>", "</title >", "<body>", "</BODY>", "<area ",
        "<p class=x>", "<?", "</ ", "<!x", "<plaintext>",
    ]  # fmt: skip
    starts, ends = frozenset({"a", "area"}), frozenset({"body"})
    rng = random.Random(13)
    for _ in range(5000):
        html = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 20)))
        full = HtmlScanner(html)
        expected = [
            t
            for t in full.tokens()
            if (isinstance(t, StartTag) and t.name in starts) or (isinstance(t, EndTag) and t.name in ends)
        ]
        some = HtmlScanner(html, starts, ends)
        assert (list(some.tokens()), some.open_from) == (expected, full.open_from), html


@pytest.mark.parametrize(
    "tail",
    [
        "<!-- never closed",
        '<a href="https://club.example/open',
        "<textarea>never closed",
        "<a ",
    ],
)
def test_the_footer_is_never_swallowed_by_an_unclosed_tail(tail: str) -> None:
    """Appended after something the html never closes, the unsubscribe link would be invisible."""
    tracked = _send("<p>Hi {{ firstName }}</p>" + tail, None, first_name="Ann")
    assert tracked.html is not None
    assert tracked.html.startswith("<p>Hi Ann</p>")
    assert tracked.html.endswith(tail)  # the tail is left as written, after the footer
    footer = tracked.html[len("<p>Hi Ann</p>") : -len(tail)]
    assert "/t/u/" in footer and '<img src="https://track.example.org/t/o/' in footer


def test_the_footer_goes_before_the_real_body_end_not_one_in_a_comment() -> None:
    tracked = _send("<html><body><p>x</p></body><!-- </body> --></html>", None)
    assert tracked.html is not None
    before, after = tracked.html.split("</body><!--")
    assert "/t/u/" in before and "/t/u/" not in after


# ---- only the template's links are tracked -------------------------------------------------------------

TEMPLATE_HTML = (
    "<html><body><p>Hi {{ firstName }}, from {{ attributes.site }}</p>"
    '<p><a href="https://club.example/offer?a=1&amp;b=2">Offer</a> '
    '<a href="{{ attributes.site }}">Your site</a> '
    '<a href="https://club.example/book?id={{ externalId }}">Book</a></p></body></html>'
)
TEMPLATE_TEXT = (
    "Hi {{ firstName }}. Offer: https://club.example/offer?a=1&b=2. "
    "Yours: {{ attributes.site }} Book: https://club.example/book?id={{ externalId }}"
)


def test_a_url_from_a_recipient_field_is_never_signed() -> None:
    tracked = _send(
        TEMPLATE_HTML,
        TEMPLATE_TEXT,
        first_name=EVIL,
        external_id="bk-7",
        attributes={"site": "https://evil.example/y"},
    )
    assert tracked.html is not None and tracked.text is not None
    expected = [
        ("link_1", "https://club.example/offer?a=1&b=2"),
        ("link_2", "https://club.example/book?id=bk-7"),
    ]
    assert _clicks(tracked.html) == expected
    assert _clicks(tracked.text) == expected
    assert f"<p>Hi {EVIL}, from https://evil.example/y</p>" in tracked.html
    assert '<a href="https://evil.example/y">Your site</a>' in tracked.html
    assert tracked.text.startswith(f"Hi {EVIL}. Offer: https://track.example.org/t/c/")
    assert " Yours: https://evil.example/y Book: https://track.example.org/t/c/" in tracked.text


def test_the_derived_text_part_tracks_the_same_links() -> None:
    tracked = _send(
        TEMPLATE_HTML,
        DERIVED_TEXT_OPEN + TEMPLATE_HTML + DERIVED_TEXT_CLOSE,
        first_name=EVIL,
        external_id="bk-7",
        attributes={"site": "https://evil.example/y"},
    )
    assert tracked.text is not None
    assert _clicks(tracked.text) == [
        ("link_1", "https://club.example/offer?a=1&b=2"),
        ("link_2", "https://club.example/book?id=bk-7"),
    ]
    assert tracked.text.startswith(f"Hi {EVIL}, from https://evil.example/y\n\nOffer (https://track.")
    assert "Your site (https://evil.example/y) Book (https://track.example.org/t/c/" in tracked.text


@pytest.mark.parametrize(
    ("href", "attributes"),
    [
        ("https://club.example{{ attributes.v }}", {"v": ".evil.example/x"}),  # the host
        ("https://{{ attributes.v }}/offer", {"v": "evil.example"}),
        ("https://club.example/{{ attributes.v }}", {"v": "offer/../../redirect?to=evil"}),  # the path
        ("https://club.example/offer{{ attributes.v }}", {"v": "@evil.example"}),
        ("{{ attributes.v }}https://club.example/offer", {"v": "https://evil.example/?"}),
    ],
)
def test_a_recipient_value_cannot_choose_a_tracked_host_or_path(
    href: str, attributes: dict[str, str]
) -> None:
    tracked = _send(
        f'<a href="{href}">x</a> <a href="https://club.example/offer">y</a>', None, attributes=attributes
    )
    assert tracked.html is not None
    assert _clicks(tracked.html) == [("link_1", "https://club.example/offer")]


@pytest.mark.parametrize("value", ["@evil.example", "x#@evil.example/", "1&next=https://evil.example/"])
def test_query_values_from_a_recipient_are_tracked_under_the_template_host(value: str) -> None:
    tracked = _send('<a href="https://club.example/book?id={{ externalId }}">b</a>', None, external_id=value)
    assert tracked.html is not None
    [(link_id, url)] = _clicks(tracked.html)
    assert (link_id, url) == ("link_1", "https://club.example/book?id=" + value)
    assert urlsplit(url).hostname == "club.example" and urlsplit(url).path == "/book"


def test_template_links_are_read_from_the_static_text() -> None:
    links = template_links(TEMPLATE_HTML, TEMPLATE_TEXT)
    assert links.allows("https://club.example/offer?a=1&b=2")
    assert links.allows("https://club.example/offer?a=1&amp;b=2")  # as written in the html
    assert links.allows("https://club.example/book?id=anything")
    assert not links.allows("https://club.example/book")
    assert not links.allows("https://club.example/offer")
    assert not links.allows(EVIL)
    # They travel with the rendered parts, between processes too.
    parts = render_parts("Hi", TEMPLATE_HTML, TEMPLATE_TEXT, recipient_context({}))
    assert pickle.loads(pickle.dumps(parts)) == parts
    assert parts.links == links and isinstance(parts.links, TemplateLinks)


def test_parts_not_rendered_from_a_template_track_every_link() -> None:
    tracked, _ = tracked_parts(EmailParts("Hi", f'<a href="{EVIL}">x</a>', None), ENVELOPE, LINKS)
    assert tracked.html is not None and _clicks(tracked.html) == [("link_1", EVIL)]


# ---- end to end ---------------------------------------------------------------------------------------


async def _customer_in_segment(stack: Stack, **fields: Any) -> tuple[dict[str, Any], str]:
    email = f"links-{secrets.token_hex(4)}@example.com"
    r = await stack.call(
        "POST", "/customers", json={"tenantId": stack.tenant, "externalId": "bk-7", "email": email, **fields}
    )
    assert r.status_code == 201, r.text
    customer: dict[str, Any] = r.json()
    r = await stack.call(
        "POST",
        "/segments",
        json={"tenantId": stack.tenant, "name": "one", "type": "STATIC", "customerIds": [customer["id"]]},
    )
    assert r.status_code == 201, r.text
    return customer, str(r.json()["id"])


async def _send_campaign(stack: Stack, segment_id: str, html: str) -> str:
    r = await stack.call(
        "POST",
        "/templates",
        json={"tenantId": stack.tenant, "name": "T", "channel": "EMAIL", "subject": "Hi", "html": html},
    )
    assert r.status_code == 201, r.text
    r = await stack.call(
        "POST",
        "/campaigns",
        json={
            "tenantId": stack.tenant,
            "name": "links",
            "type": "ONE_TIME",
            "segmentId": segment_id,
            "channels": ["EMAIL"],
            "emailTemplateId": r.json()["id"],
        },
    )
    assert r.status_code == 201, r.text
    campaign_id = str(r.json()["id"])
    assert (await stack.call("POST", f"/campaigns/{campaign_id}/execute")).status_code == 200
    await wait_for(stack, campaign_id, "COMPLETED", timeout=60)
    return campaign_id


async def test_a_sent_email_signs_only_the_template_links(make_stack: StackFactory) -> None:
    stack = await make_stack()
    customer, segment_id = await _customer_in_segment(
        stack, firstName=EVIL, attributes={"site": "https://evil.example/y"}
    )
    await _send_campaign(stack, segment_id, TEMPLATE_HTML)
    [mail] = [m for m in stack.smtp.snapshot() if m.to == customer["email"]]
    html, plain = mail.part("html"), mail.part("plain").replace("\r\n", "\n")
    base, secret = stack.settings.public_url, stack.settings.tracking_secret
    expected = [
        ("link_1", "https://club.example/offer?a=1&b=2"),
        ("link_2", "https://club.example/book?id=bk-7"),
    ]
    assert _clicks(html, base, secret) == expected
    assert _clicks(plain, base, secret) == expected
    assert f"<p>Hi {EVIL}, from https://evil.example/y</p>" in html
    assert '<a href="https://evil.example/y">Your site</a>' in html
    assert plain.startswith(f"Hi {EVIL}, from https://evil.example/y\n\nOffer (http://testserver/t/c/")
    # The template's links redirect where the template said.
    for (_, url), token in zip(
        expected, re.findall(r'href="http://testserver/t/c/([^"]+)"', html), strict=True
    ):
        r = await stack.api.get(f"/t/c/{token}")
        assert r.status_code == 302 and r.headers["location"] == url


async def test_a_broken_html_template_is_sent_promptly(make_stack: StackFactory) -> None:
    """200 KB of unclosed tags after the content: sent in seconds (it stalled the worker for
    minutes), the template's link tracked and the footer where a mail client shows it."""
    stack = await make_stack()
    customer, segment_id = await _customer_in_segment(stack, firstName="Ann")
    tail = '<a "' * (LARGE // 4)
    html = '<p>Hi {{ firstName }}</p><p><a href="https://club.example/offer">Offer</a></p>' + tail
    started = time.monotonic()
    await _send_campaign(stack, segment_id, html)
    elapsed = time.monotonic() - started
    [mail] = [m for m in stack.smtp.snapshot() if m.to == customer["email"]]
    body = mail.part("html")
    assert body.startswith('<p>Hi Ann</p><p><a href="http://testserver/t/c/') and body.endswith(tail)
    assert _clicks(body, stack.settings.public_url, stack.settings.tracking_secret) == [
        ("link_1", "https://club.example/offer")
    ]
    assert "/t/u/" in body[: -len(tail)]
    assert mail.part("plain").replace("\r\n", "\n").startswith("Hi Ann\n\nOffer (http://testserver/t/c/")
    assert elapsed < 30, elapsed


async def test_previews_of_broken_html_do_not_slow_the_api(make_stack: StackFactory) -> None:
    """The text part derived from 50 KB of unclosed tags (half a minute before), previewed again
    and again."""
    stack = await make_stack(worker=False)
    html = "<p>Hi {{ firstName }}</p>" + "<a " * (SMALL // 3)
    r = await stack.call(
        "POST",
        "/templates",
        json={"tenantId": stack.tenant, "name": "T", "channel": "EMAIL", "subject": "Hi", "html": html},
    )
    assert r.status_code == 201, r.text
    path = f"/templates/{r.json()['id']}/preview"
    async with (
        api_process(stack) as base_url,
        httpx.AsyncClient(base_url=base_url, headers=stack.headers(), timeout=30) as client,
    ):

        async def attack() -> None:
            answer = await client.post(path, json={"sample": {"firstName": "Ann"}})
            assert answer.status_code == 200, answer.text
            assert answer.json()["text"] == "Hi Ann"

        await attack()  # the first render also starts the render processes
        await unaffected(base_url, attack)
