"""Tracking: what `build_email` puts in every email, and the public endpoints behind those links.

Forged, altered and foreign tokens, and open-redirect attempts, must record nothing.
"""

import base64
import re
from datetime import UTC, datetime
from email import message_from_bytes
from email import policy as email_policy
from typing import Any

import httpx
from sqlalchemy import text

from activities.send.gates import skip_reason
from api.deps import AppState
from api.main import create_app
from api.rollup import BackgroundRollup
from core.enums import SkipReason
from core.settings import Settings
from db.audience import CONSENT_COLUMNS
from db.engine import make_engine
from providers.email_content import EmailEnvelope, EmailParts, build_email, wire_email
from providers.tracking import LinkKind, TokenSigner, TrackingClaim, TrackingLinks
from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, wait_for
from tests.test_stats import Ledger, build_ledger, signed_post

SETTINGS = Settings(environment="test", public_url="https://track.example.org/", tracking_secret="s" * 40)
ENVELOPE = EmailEnvelope(
    "delivery_0123456789abcdef",
    "campaign_0123456789abcdef",
    "tenant_1",
    "customer_1",
    "Club <club@example.com>",
    "ann@example.com",
)
TEMPLATE_HTML = """<html><head><link rel="stylesheet" href="https://cdn.example.com/site.css"></head>
<body><p>Hi Ann, <a class="btn" href="https://example.com/offer?a=1&amp;b=2">the offer</a>,
<a href='https://example.com/club'>the club</a>, <a href=https://example.com/unquoted>this</a>,
<a title="a > b" href="http://example.com/plain">plain http</a>,
<a href="mailto:desk@example.com">mail us</a>,
<a href="#top">top</a>, and again <a href="https://example.com/offer?a=1&amp;b=2">the offer</a>.</p>
<map><area shape="rect" coords="0,0,1,1" href="https://example.com/area"></map>
</body></html>"""
TEMPLATE_TEXT = (
    "Offer: https://example.com/offer?a=1&b=2. Club (https://example.com/club), new https://example.com/t"
)


def _claim(url: str, kind: LinkKind, secret: str = SETTINGS.tracking_secret) -> TrackingClaim | None:
    token = url.rsplit("/", 1)[1]
    return TokenSigner(secret).verify(token, kind)


def test_build_email_tracks_every_link_and_adds_pixel_and_unsubscribe() -> None:
    msg = build_email(ENVELOPE, EmailParts("Hello", TEMPLATE_HTML, TEMPLATE_TEXT), SETTINGS)
    html_part = msg.get_body(preferencelist=("html",))
    text_part = msg.get_body(preferencelist=("plain",))
    assert html_part is not None and text_part is not None
    html, plain = str(html_part.get_content()), str(text_part.get_content())

    hrefs = re.findall(r"""href=(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", html)
    hrefs = [a or b or c for a, b, c in hrefs]
    clicks = [h for h in hrefs if h.startswith("https://track.example.org/t/c/")]
    claims = [_claim(h, LinkKind.CLICK) for h in clicks]
    assert [(c.link_id, c.url) for c in claims if c] == [
        ("link_1", "https://example.com/offer?a=1&b=2"),  # HTML entities are decoded once
        ("link_2", "https://example.com/club"),
        ("link_3", "https://example.com/unquoted"),
        ("link_4", "http://example.com/plain"),
        ("link_1", "https://example.com/offer?a=1&b=2"),  # the same URL keeps its id
        ("link_5", "https://example.com/area"),
    ]
    assert all(
        c and c.campaign_id == ENVELOPE.campaign_id and c.delivery_id == ENVELOPE.delivery_id for c in claims
    )
    # Not links to follow: the stylesheet, mailto and fragment stay as they were.
    assert "https://cdn.example.com/site.css" in hrefs and "mailto:desk@example.com" in hrefs
    assert "#top" in hrefs
    assert "https://example.com/offer" not in " ".join(hrefs)

    # The pixel and the unsubscribe link sit inside the body.
    pixel = re.search(r'<img src="(https://track\.example\.org/t/o/[^"]+)"', html)
    assert pixel and _claim(pixel.group(1), LinkKind.OPEN) is not None
    assert html.index(pixel.group(0)) < html.index("</body>")
    unsubscribe = msg["List-Unsubscribe"]
    assert re.fullmatch(r"<https://track\.example\.org/t/u/[A-Za-z0-9_.-]+>", unsubscribe)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe.strip("<>") in hrefs
    assert _claim(unsubscribe.strip("<>"), LinkKind.UNSUBSCRIBE) is not None

    # Text part: bare URLs rewritten (trailing punctuation kept outside), ids shared with the HTML.
    text_links = re.findall(r"https://track\.example\.org/t/c/[A-Za-z0-9_.-]+", plain)
    text_claims = [_claim(u.rstrip("."), LinkKind.CLICK) for u in text_links]
    assert [(c.link_id, c.url) for c in text_claims if c] == [
        ("link_1", "https://example.com/offer?a=1&b=2"),
        ("link_2", "https://example.com/club"),
        ("link_6", "https://example.com/t"),
    ]
    assert "), new https://track.example.org/t/c/" in plain
    assert f"Unsubscribe: {unsubscribe.strip('<>')}" in plain


def test_list_unsubscribe_header_survives_smtp_flattening_unencoded() -> None:
    msg = build_email(ENVELOPE, EmailParts("Hello", TEMPLATE_HTML, None), SETTINGS)
    wire = wire_email(ENVELOPE, EmailParts("Hello", TEMPLATE_HTML, None), SETTINGS).data  # the bytes sent
    header = next(line for line in wire.split(b"\r\n") if line.startswith(b"List-Unsubscribe:"))
    assert b"=?" not in header and header.endswith(b">")
    parsed = message_from_bytes(wire, policy=email_policy.default)
    assert parsed["List-Unsubscribe"] == msg["List-Unsubscribe"]
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    plain = parsed.get_body(preferencelist=("plain",))
    assert plain is not None and "Unsubscribe: https://track.example.org/t/u/" in str(plain.get_content())


async def _counters(stack: Stack, campaign_id: str) -> dict[tuple[str, str], tuple[int, int]]:
    """The roll-ups once the background roll-up has counted what tracking appended."""
    await BackgroundRollup(stack.engine).run_once()
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT channel, type, recipients, events FROM campaign_counters WHERE campaign_id = :c"),
            {"c": campaign_id},
        )
        return {(r[0], r[1]): (int(r[2]), int(r[3])) for r in rows}


async def _interactions(stack: Stack, campaign_id: str) -> int:
    async with stack.engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text("SELECT count(*) FROM interactions WHERE campaign_id = :c"), {"c": campaign_id}
                )
            ).scalar_one()
        )


async def _small_ledger(stack: Stack, n: int = 3) -> Ledger:
    now = datetime.now(UTC)
    return await build_ledger(stack, targets=n, email_sent=n, sms_sent=0, sent_at=lambda i: now)


async def test_opening_twice_counts_one_opener_and_two_opens(make_stack: StackFactory) -> None:
    # Two opens (clicks) of one message a while apart: without the replay window, which would
    # count this client's quick repeat once (tests/test_edge_limits.py).
    stack = await make_stack(worker=False, tracking_dedupe_seconds=0)
    ledger = await _small_ledger(stack)
    await ledger.open(0)
    await ledger.open(0)
    await ledger.open(1)
    # Not rolled up yet (no background roll-up runs here), and counted all the same.
    campaign = (await stack.call("GET", f"/campaigns/{ledger.campaign_id}", tenant=ledger.tenant)).json()
    assert campaign["openedCount"] == 2
    counters = await _counters(stack, ledger.campaign_id)
    assert counters[("ALL", "OPENED")] == (2, 3) and counters[("EMAIL", "OPENED")] == (2, 3)
    stats = await ledger.stats()
    assert stats["openedCount"] == 2 and stats["byChannel"]["EMAIL"]["opened"] == 2
    r = await stack.call("GET", f"/campaigns/{ledger.campaign_id}/interactions", params={"type": "OPENED"})
    assert r.json()["meta"]["total"] == 3


async def test_click_records_link_and_redirects_to_the_signed_url_only(make_stack: StackFactory) -> None:
    # Two opens (clicks) of one message a while apart: without the replay window, which would
    # count this client's quick repeat once (tests/test_edge_limits.py).
    stack = await make_stack(worker=False, tracking_dedupe_seconds=0)
    ledger = await _small_ledger(stack)
    club = ledger.links(0, "c")[1]
    r = await stack.api.get(club)
    assert r.status_code == 302 and r.headers["location"] == "https://example.com/club?x=1&y=2"
    assert "no-store" in r.headers["cache-control"]
    # Extra query parameters cannot steer the redirect anywhere else.
    r = await stack.api.get(club, params={"url": "https://evil.example/", "next": "https://evil.example/"})
    assert r.status_code == 302 and r.headers["location"] == "https://example.com/club?x=1&y=2"
    r = await stack.call("GET", f"/campaigns/{ledger.campaign_id}/interactions", params={"type": "CLICKED"})
    body = r.json()
    assert body["meta"]["total"] == 2
    assert body["data"][0]["metadata"] == {"linkId": "link_2", "linkUrl": "https://example.com/club?x=1&y=2"}
    assert body["data"][0]["customerId"] == ledger.customers[0]
    assert (await _counters(stack, ledger.campaign_id))[("ALL", "CLICKED")] == (1, 2)


def _tamper_url(token: str, new_url: str) -> str:
    """Keep the mac, swap the URL inside the payload."""
    body, mac = token.split(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    fields = payload.split("\x1f")
    fields[-1] = new_url
    forged = base64.urlsafe_b64encode("\x1f".join(fields).encode()).rstrip(b"=").decode()
    return f"{forged}.{mac}"


async def test_forged_altered_and_foreign_tokens_record_nothing(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    ledger = await _small_ledger(stack)
    other = await _small_ledger(stack)
    before = (await _counters(stack, ledger.campaign_id), await _counters(stack, other.campaign_id))
    rows_before = (
        await _interactions(stack, ledger.campaign_id),
        await _interactions(stack, other.campaign_id),
    )

    real = TokenSigner(stack.settings.tracking_secret)
    wrong = TokenSigner("not-the-tracking-secret-0123456789")
    click = ledger.links(0, "c")[0].rsplit("/", 1)[1]
    pixel = ledger.links(0, "o")[0].rsplit("/", 1)[1]
    unsub = ledger.links(0, "u")[0].rsplit("/", 1)[1]
    delivery = ledger.email_delivery[0]
    forged_pixels = [
        "garbage",
        "x" * 9000,
        pixel[:-2] + ("AA" if not pixel.endswith("AA") else "BB"),  # altered mac
        pixel.split(".")[0] + ".",
        wrong.sign(TrackingClaim(LinkKind.OPEN, ledger.campaign_id, delivery)),  # another secret
        click,  # a click token is not a pixel token
        # Genuinely signed, but naming a delivery of another campaign: recorded nowhere.
        real.sign(TrackingClaim(LinkKind.OPEN, other.campaign_id, delivery)),
        real.sign(TrackingClaim(LinkKind.OPEN, ledger.campaign_id, other.email_delivery[0])),
        real.sign(TrackingClaim(LinkKind.OPEN, ledger.campaign_id, "delivery_doesnotexist00")),
    ]
    for token in forged_pixels:
        r = await stack.api.get(f"/t/o/{token}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/gif", token[:40]

    evil = "https://evil.example/phish"
    forged_clicks = [
        _tamper_url(click, evil),
        wrong.sign(TrackingClaim(LinkKind.CLICK, ledger.campaign_id, delivery, "link_1", evil)),
        pixel,
        unsub,
        "garbage.garbage",
        f"{click}%0d%0aLocation:%20evil.example",
    ]
    for token in forged_clicks:
        r = await stack.api.get(f"/t/c/{token}", params={"url": evil})
        assert r.status_code == 404 and "location" not in r.headers, token[:40]
        assert r.headers["content-type"].startswith("text/html") and evil not in r.text
    # Signed by us but not a web URL: refused too, never followed.
    for url in (
        "javascript:alert(1)",
        "data:text/html,hi",
        "//evil.example/",
        "https://x.example/\r\nSet-Cookie: a",
    ):
        token = real.sign(TrackingClaim(LinkKind.CLICK, ledger.campaign_id, delivery, "link_1", url))
        r = await stack.api.get(f"/t/c/{token}")
        assert r.status_code == 400 and "location" not in r.headers, url
    # A click token of one campaign re-signed for another one's delivery records nothing.
    foreign = real.sign(
        TrackingClaim(LinkKind.CLICK, other.campaign_id, delivery, "link_1", "https://example.com/offer")
    )
    r = await stack.api.get(f"/t/c/{foreign}")
    assert r.status_code == 302  # the URL is one we signed; only the recording is refused

    for token in (
        pixel,
        click,
        wrong.sign(TrackingClaim(LinkKind.UNSUBSCRIBE, ledger.campaign_id, delivery)),
        real.sign(TrackingClaim(LinkKind.UNSUBSCRIBE, other.campaign_id, delivery)),
    ):
        r = await stack.api.post(f"/t/u/{token}", content=b"List-Unsubscribe=One-Click")
        assert r.status_code == 404, token[:40]

    assert (await _counters(stack, ledger.campaign_id), await _counters(stack, other.campaign_id)) == before
    assert (
        await _interactions(stack, ledger.campaign_id),
        await _interactions(stack, other.campaign_id),
    ) == rows_before
    async with stack.engine.connect() as conn:
        suppressed = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM customers"
                    " WHERE id = ANY(:ids) AND email_unsubscribed_at IS NOT NULL"
                ),
                {"ids": ledger.customers + other.customers},
            )
        ).scalar_one()
    assert suppressed == 0


async def test_links_keep_working_when_the_database_is_down() -> None:
    settings = Settings(environment="test", database_url="postgresql://nobody@127.0.0.1:9/none")
    engine = make_engine(settings.database_url or "")
    app = create_app(settings, AppState(settings=settings, engine=engine, control=None))
    links = TrackingLinks(settings.public_url, settings.tracking_secret)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as api:
        r = await api.get(links.click_url("campaign_1", "delivery_1", "link_1", "https://example.com/a"))
        assert r.status_code == 302 and r.headers["location"] == "https://example.com/a"
        r = await api.get(links.open_url("campaign_1", "delivery_1"))
        assert r.status_code == 200 and r.content.startswith(b"GIF89a")
        r = await api.post(links.unsubscribe_url("campaign_1", "delivery_1"))
        assert r.status_code == 500  # an unsubscribe is never confirmed unless it was stored
    await engine.dispose()


async def _customer_row(stack: Stack, customer_id: str) -> Any:
    async with stack.engine.connect() as conn:
        return (
            (
                await conn.execute(
                    text(f"SELECT c.id, {CONSENT_COLUMNS} FROM customers c WHERE c.id = :id"),
                    {"id": customer_id},
                )
            )
            .mappings()
            .one()
        )


async def test_unsubscribe_one_click_stops_email_and_is_idempotent(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    ledger = await _small_ledger(stack)
    url = ledger.emails[0]["List-Unsubscribe"].strip("<>")
    assert ledger.links(0, "u") == [url]

    # GET (what a link scanner does) shows a confirmation form and changes nothing.
    r = await stack.api.get(url)
    assert r.status_code == 200 and '<form method="post">' in r.text
    assert (await _customer_row(stack, ledger.customers[0]))["email_unsubscribed_at"] is None

    for _ in range(2):  # RFC 8058 one-click POST, then a repeat
        r = await stack.api.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200 and "unsubscribed" in r.text
    row = await _customer_row(stack, ledger.customers[0])
    assert row["email_unsubscribed_at"] is not None and row["sms_unsubscribed_at"] is None
    assert skip_reason(row, "EMAIL") == SkipReason.UNSUBSCRIBED  # the sender skips them from now on
    assert skip_reason(row, "SMS") is None
    assert (await _counters(stack, ledger.campaign_id))[("ALL", "UNSUBSCRIBED")] == (1, 1)
    assert (await ledger.stats())["unsubscribedCount"] == 1


async def test_a_real_campaign_is_tracked_end_to_end(make_stack: StackFactory) -> None:
    """Real worker, SMTP and SMS sinks: the links in the emails it sent record into its stats."""
    stack = await make_stack()
    audience = await make_audience(stack.engine, stack.tenant, 4)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED")

    ours = {c["email"] for c in audience.customers}
    emails = [m for m in stack.smtp.snapshot() if m.to in ours]
    assert len(emails) == 4
    for m in emails:
        assert m.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert m.message["List-Unsubscribe"].startswith("<http://testserver/t/u/")
        assert "https://example.com/offer" not in m.part("html")
    first = emails[0].part("html")
    pixel = re.search(r'src="(http://testserver/t/o/[^"]+)"', first)
    link = re.search(r'href="(http://testserver/t/c/[^"]+)"', first)
    assert pixel and link
    assert (await stack.api.get(pixel.group(1))).status_code == 200
    r = await stack.api.get(link.group(1))
    assert r.status_code == 302 and r.headers["location"] == "https://example.com/offer"
    # The provider reports deliveries by Message-ID (email) and sid (SMS).
    email_events = [
        {
            "id": f"e-{m.message['Message-ID']}",
            "type": "DELIVERED",
            "providerMessageId": m.message["Message-ID"],
        }
        for m in emails
    ]
    assert (await signed_post(stack, "/webhooks/email", {"events": email_events})).json()["recorded"] == 4
    phones = {c["phone"] for c in audience.customers}
    sms_events = [
        {"id": f"s-{s.sid}", "type": "DELIVERED", "providerMessageId": s.sid}
        for s in stack.sms.messages
        if s.to in phones
    ]
    assert (await signed_post(stack, "/webhooks/sms", {"events": sms_events})).json()["recorded"] == 4

    stats = (await stack.call("GET", f"/campaigns/{cid}/stats")).json()
    assert (stats["sentCount"], stats["deliveredCount"], stats["openedCount"], stats["clickedCount"]) == (
        4,
        4,
        1,
        1,
    )
    assert stats["byChannel"] == {
        "EMAIL": {"sent": 4, "delivered": 4, "opened": 1, "clicked": 1, "bounced": 0},
        "SMS": {"sent": 4, "delivered": 4, "failed": 0},
    }
    assert stats["openRate"] == 0.25 and stats["clickRate"] == 1.0
