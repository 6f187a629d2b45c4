"""Templates (README "Templates"): the sandbox refuses escapes, undefined names are caught at save time,
SMS encoding and segments, text derived from html, versioned edits pinned by a running send, and a
preview equal to what the sinks received."""

import secrets
from typing import Any

import httpx
import pytest

from core.enums import Channel
from providers.email_content import EmailEnvelope, EmailParts, tracked_parts
from providers.html_text import html_to_text
from providers.rendering import (
    DERIVED_TEXT_CLOSE,
    DERIVED_TEXT_OPEN,
    TemplateSyntaxProblem,
    check_template,
    recipient_context,
    render,
)
from providers.sms_encoding import sms_encoding
from providers.tracking import tracking_links
from tests.conftest import Stack, StackFactory
from tests.helpers import wait_for
from tests.sends import DirectRun, insert_campaign

# ---- what a template may read ------------------------------------------------------------------------

# Ways out of the sandbox towards Python internals: every one is refused when the template is saved.
ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__ }}",
    "{{ firstName.__class__.__init__.__globals__ }}",
    "{{ attributes.__class__.__base__.__subclasses__() }}",
    "{{ attributes['__class__'] }}",
    "{{ firstName|attr('__class__') }}",
    "{{ firstName.upper.__self__ }}",
    "{% for c in ''.__class__.__mro__ %}{{ c }}{% endfor %}",
    "{% set x = firstName.__doc__ %}{{ x }}",
    "{{ lipsum.__globals__['os'].environ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ config }}",
    "{{ settings }}",
    "{{ request }}",
    "{{ range(10**9) | list }}",
    "{{ namespace() }}",
]


@pytest.mark.parametrize("source", ESCAPES)
@pytest.mark.parametrize("html", [False, True])
def test_escapes_are_refused_when_saved(source: str, html: bool) -> None:
    with pytest.raises(TemplateSyntaxProblem, match=r"not allowed|unknown variable"):
        check_template(f"x{source}y", html=html)


def test_unknown_names_are_refused_when_saved_and_recipient_fields_are_not() -> None:
    with pytest.raises(TemplateSyntaxProblem, match=r"unknown variable.*'frstName'"):
        check_template("Hi {{ frstName }}")
    with pytest.raises(TemplateSyntaxProblem, match="'nickname', 'tier'"):
        check_template("{{ tier }} {{ nickname | default('friend') }}")
    ok = (
        "{{ firstName }} {{ lastName }} {{ email }} {{ phone }} {{ clubId }} {{ externalId }} "
        "{{ attributes.tier }} {{ attributes['handicap'] }} {{ attributes.nickname | default('friend') }} "
        "{% set greeting = 'Hi' %}{{ greeting }} "
        "{% for key in attributes %}{{ loop.index }}{{ key }}{% endfor %} "
        "{% macro tag(x) %}<{{ x }}>{{ caller() }}{% endmacro %}{% call tag(1) %}in{% endcall %}"
    )
    check_template(ok)
    check_template(ok, html=True)


def test_a_reach_for_internals_at_render_time_fails_the_render() -> None:
    """What cannot be seen when saving (a name computed from data) fails safely when rendering."""
    ctx = recipient_context({"first_name": "Ann", "attributes": {"k": "__class__", "m": "pop"}})
    for source in ("{{ firstName|attr(attributes.k) }}", "{{ attributes[attributes.m]('k') }}"):
        check_template(source)
        with pytest.raises(TemplateSyntaxProblem, match=r"not allowed|unsafe"):
            render(source, ctx)
    with pytest.raises(TemplateSyntaxProblem, match="not allowed"):
        render("{{ attributes.update }}", ctx)


def test_attributes_read_the_customer_data_first_and_a_missing_one_is_empty() -> None:
    ctx = recipient_context({"attributes": {"items": "3 balls", "values": "fair play"}})
    assert render("{{ attributes.items }}, {{ attributes.values }}", ctx) == "3 balls, fair play"
    assert render("[{{ attributes.nickname }}]", ctx) == "[]"
    assert render("{{ attributes.nickname | default('friend') }}", ctx) == "friend"


# ---- SMS encoding -----------------------------------------------------------------------------------

A, EURO, EMOJI = "a", "€", "\N{GRINNING FACE}"


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 0),
        (A * 160, "GSM-7", 160, 1),
        (A * 161, "GSM-7", 161, 2),
        (A * 306, "GSM-7", 306, 2),
        (A * 307, "GSM-7", 307, 3),
        (A * 1530, "GSM-7", 1530, 10),
        ("@£$\n\rÅ_ΦΓ é 0-9;<=>?¡§¿", "GSM-7", 23, 1),  # basic characters only, measured by length
        ("Ça coûte 5€ {chez} [nous] ~ ^ | \\", "UCS-2", 33, 1),  # û is not GSM
        ("Ça va? 5€ {chez} [nous] ~ ^ | \\ é à ñ ü Ø Å ß Ξ", "GSM-7", 56, 1),
        (EURO * 80, "GSM-7", 160, 1),  # an extension character takes two septets
        (EURO * 81, "GSM-7", 162, 2),
        (A * 152 + EURO + A * 152, "GSM-7", 306, 3),  # the escape pair is not split: 152 | 153 | 1
        ("Zoë", "UCS-2", 3, 1),
        ("ł" * 70, "UCS-2", 70, 1),
        ("ł" * 71, "UCS-2", 71, 2),
        ("ł" * 134, "UCS-2", 134, 2),
        (A * 66 + EMOJI + A * 66, "UCS-2", 134, 3),  # a surrogate pair is not split: 66 | 67 | 1
        (f"Hi {EMOJI}", "UCS-2", 5, 1),
    ],
)
def test_sms_encoding_and_segments(text: str, encoding: str, units: int, segments: int) -> None:
    got = sms_encoding(text)
    assert (got.encoding, got.units, got.segments) == (encoding, units, segments)


# ---- text derived from html -------------------------------------------------------------------------


def test_html_to_text() -> None:
    html = (
        "<html><head><title>T</title><style>p { color: red }</style></head><body>"
        "<h1>Hi   Ann</h1>\n<p>Your tee time\nis <b>ready</b> &amp; waiting. "
        '<a href="https://example.com/book">Book now</a></p>'
        "<ul><li>one</li>\n<li>two</li></ul><p>Line<br>break <a href='https://example.com'>https://example.com</a>"
        "</p><script>alert(1)</script></body></html>"
    )
    assert html_to_text(html) == (
        "Hi Ann\n\nYour tee time is ready & waiting. Book now (https://example.com/book)\n\n"
        "- one\n- two\n\nLine\nbreak https://example.com"
    )


def test_the_derived_text_part_is_the_rendered_html_as_text() -> None:
    ctx = recipient_context({"first_name": "<Ann>", "attributes": {"tier": "gold"}})
    html = "<p>Hi {{ firstName }},</p><p>you are <b>{{ attributes.tier }}</b></p>"
    source = DERIVED_TEXT_OPEN + html + DERIVED_TEXT_CLOSE
    # The html escapes the name, the text part shows it as written.
    assert render(html, ctx, html=True) == "<p>Hi &lt;Ann&gt;,</p><p>you are <b>gold</b></p>"
    assert render(source, ctx) == "Hi <Ann>,\n\nyou are gold"


# ---- the API ----------------------------------------------------------------------------------------


def problem_paths(r: httpx.Response, status: int) -> list[str]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return [e["path"] for e in r.json().get("errors", [])]


async def create(stack: Stack, **fields: Any) -> dict[str, Any]:
    r = await stack.call("POST", "/templates", json={"tenantId": stack.tenant, "name": "T", **fields})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_escapes_and_unknown_names_are_a_422_when_saved(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    sms = {"tenantId": stack.tenant, "name": "S", "channel": "SMS"}
    email = {"tenantId": stack.tenant, "name": "E", "channel": "EMAIL", "subject": "Hi", "html": "<p>x</p>"}
    for probe in ESCAPES:
        for body, field in ((sms, "body"), (email, "subject"), (email, "html"), (email, "text")):
            r = await stack.call("POST", "/templates", json={**body, field: f"x{probe}y"})
            assert problem_paths(r, 422) == [f"$.{field}"], (probe, r.text)
            assert "Traceback" not in r.text
    r = await stack.call("POST", "/templates", json={**sms, "body": "Hi {{ frstName }}"})
    assert problem_paths(r, 422) == ["$.body"]
    assert "frstName" in r.json()["errors"][0]["message"]
    r = await stack.call("GET", "/templates", params={"tenantId": stack.tenant})
    assert r.json()["meta"]["total"] == 0


async def test_a_render_time_escape_is_refused_in_the_preview(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    r = await stack.call(
        "POST",
        "/customers",
        json={"tenantId": stack.tenant, "externalId": "p-1", "attributes": {"k": "__class__"}},
    )
    customer_id = r.json()["id"]
    template = await create(stack, channel="SMS", body="x{{ firstName|attr(attributes.k) }}y")
    r = await stack.call("POST", f"/templates/{template['id']}/preview", json={"customerId": customer_id})
    assert problem_paths(r, 422) == ["template.body"]
    assert "str" not in r.json()["detail"].split("not allowed")[1]  # nothing of the object leaks
    template = await create(stack, channel="SMS", body="{{ 1 / 0 }}")
    r = await stack.call("POST", f"/templates/{template['id']}/preview", json={})
    assert problem_paths(r, 422) == ["template.body"]


async def test_sms_templates_show_encoding_and_segments(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    gsm = await create(stack, channel="SMS", body="Hi {{ firstName }}, tee time at 9!")
    assert (gsm["encoding"], gsm["segments"]) == ("GSM-7", 1)
    long = await create(stack, channel="SMS", body="Hi {{ firstName }} " + "x" * 160)
    assert (long["encoding"], long["segments"]) == ("GSM-7", 2)
    emoji = await create(stack, channel="SMS", body=f"Hi {{{{ firstName }}}} {EMOJI}")
    assert (emoji["encoding"], emoji["segments"]) == ("UCS-2", 1)
    r = await stack.call("GET", f"/templates/{emoji['id']}")
    assert (r.json()["encoding"], r.json()["segments"]) == ("UCS-2", 1)
    # The preview counts the rendered body: a name outside GSM-7 makes it UCS-2.
    r = await stack.call("POST", f"/templates/{gsm['id']}/preview", json={"sample": {"firstName": "Zoë"}})
    assert r.json() == {"body": "Hi Zoë, tee time at 9!", "encoding": "UCS-2", "segments": 1}
    email = await create(stack, channel="EMAIL", subject="s", text="t")
    assert email["encoding"] is None and email["segments"] is None


async def test_an_email_without_text_gets_one_derived_from_html(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    template = await create(
        stack,
        channel="EMAIL",
        subject="Hi {{ firstName }}",
        html='<p>Hello <b>{{ firstName }}</b>,</p><p><a href="https://example.com/x">Book</a></p>',
    )
    assert template["text"] is None and template["textFromHtml"] is True
    r = await stack.call("POST", f"/templates/{template['id']}/preview", json={"sample": {"firstName": "Bo"}})
    assert r.json()["text"] == "Hello Bo,\n\nBook (https://example.com/x)"
    own = await create(stack, channel="EMAIL", subject="s", html="<p>h</p>", text="own")
    assert own["textFromHtml"] is False


async def test_edits_make_versions(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    email = await create(stack, channel="EMAIL", subject="v1 {{ firstName }}", html="<p>v1</p>", text="v1")
    assert email["version"] == 1
    path = f"/templates/{email['id']}"

    r = await stack.call("PATCH", path, json={"subject": "v2 {{ firstName }}", "text": None})
    assert r.status_code == 200, r.text
    v2 = r.json()
    assert v2["version"] == 2 and v2["subject"] == "v2 {{ firstName }}" and v2["text"] is None
    assert v2["html"] == "<p>v1</p>" and v2["textFromHtml"] is True and v2["updatedAt"] > email["updatedAt"]
    # A name alone, or content equal to the current one, is no new version.
    r = await stack.call("PATCH", path, json={"name": "Renamed", "html": "<p>v1</p>"})
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["name"] == "Renamed"

    bad: list[tuple[dict[str, Any], str]] = [
        ({"html": "<p>{{ firstName </p>"}, "$.html"),
        ({"subject": "{{ ''.__class__ }}"}, "$.subject"),
        ({"text": "{{ nickname }}"}, "$.text"),
        ({"subject": None}, "$.subject"),
        ({"html": None}, "$.html"),  # text is None already: nothing would be left
        ({"body": "sms"}, "$.body"),
        ({"name": None}, "$.name"),
        ({"channel": "SMS"}, "$.channel"),
    ]
    for body, where in bad:
        assert where in problem_paths(await stack.call("PATCH", path, json=body), 422), body
    assert (await stack.call("GET", path)).json() == {**r.json()}  # nothing changed

    sms = await create(stack, channel="SMS", body="v1")
    r = await stack.call("PATCH", f"/templates/{sms['id']}", json={"body": "v2 " + EMOJI})
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["encoding"] == "UCS-2"
    assert problem_paths(await stack.call("PATCH", f"/templates/{sms['id']}", json={"subject": "x"}), 422)
    assert problem_paths(await stack.call("PATCH", path, stack.other_tenant, json={"name": "x"}), 404) == []
    assert problem_paths(await stack.call("PATCH", "/templates/template_nope", json={"name": "x"}), 404) == []


# ---- versions pinned by a running send ---------------------------------------------------------------


async def _audience(stack: Stack, n: int) -> tuple[str, list[dict[str, Any]]]:
    """n customers with unique addresses (the sinks are shared by the session), in a STATIC segment."""
    tag = secrets.token_hex(4)
    rows = [
        {
            "externalId": f"pin-{i}",
            "email": f"pin{i}-{tag}@example.com",
            "phone": f"+4477009{secrets.randbelow(10**5):05d}",
            "firstName": f"Pin{i}",
        }
        for i in range(n)
    ]
    r = await stack.call("POST", "/customers/import", json={"tenantId": stack.tenant, "customers": rows})
    assert r.status_code == 200 and r.json()["created"] == n, r.text
    listed = await stack.call("GET", "/customers", params={"tenantId": stack.tenant, "take": n})
    customers = listed.json()["data"]
    segment = await stack.call(
        "POST",
        "/segments",
        json={
            "tenantId": stack.tenant,
            "name": "pins",
            "type": "STATIC",
            "customerIds": [c["id"] for c in customers],
        },
    )
    return segment.json()["id"], customers


async def test_a_running_send_keeps_the_versions_it_pinned(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    segment_id, customers = await _audience(stack, 3)
    email = await create(stack, channel="EMAIL", subject="v1 for {{ firstName }}", text="version one")
    sms = await create(stack, channel="SMS", body="sms v1 {{ firstName }}")
    campaign_id = await insert_campaign(
        stack, segment_id, email_template_id=email["id"], sms_template_id=sms["id"]
    )

    run = DirectRun(stack, campaign_id)
    try:
        await run.snapshot()  # the run pins version 1 of each template
        for template, change in (
            (email, {"subject": "v2 for {{ firstName }}", "text": "two"}),
            (sms, {"body": "v2"}),
        ):
            r = await stack.call("PATCH", f"/templates/{template['id']}", json=change)
            assert r.status_code == 200 and r.json()["version"] == 2
        await run.send()
    finally:
        await run.close()
    for customer in customers:
        [mail] = [m for m in stack.smtp.snapshot() if m.to == customer["email"]]
        assert mail.message["Subject"] == f"v1 for {customer['firstName']}"
        assert mail.part("plain").startswith("version one")
        [text] = [m for m in stack.sms.messages if m.to == customer["phone"]]
        assert text.body == f"sms v1 {customer['firstName']}"

    # The next run pins the versions current when it starts.
    run = DirectRun(stack, campaign_id, number=2)
    try:
        await run.snapshot()
        await run.send()
    finally:
        await run.close()
    subjects = sorted(m.message["Subject"] for m in stack.smtp.snapshot() if m.to == customers[0]["email"])
    assert subjects == [f"v1 for {customers[0]['firstName']}", f"v2 for {customers[0]['firstName']}"]


# ---- preview equals what the sinks received ----------------------------------------------------------


async def test_the_preview_is_what_the_customer_receives(make_stack: StackFactory) -> None:
    stack = await make_stack()
    tag = secrets.token_hex(4)
    customer = (
        await stack.call(
            "POST",
            "/customers",
            json={
                "tenantId": stack.tenant,
                "externalId": "pv-1",
                "email": f"preview-{tag}@example.com",
                "phone": f"+4477008{secrets.randbelow(10**5):05d}",
                "firstName": "Zoë",
                "lastName": "<Lee>",
                "attributes": {"tier": "gold", "points": 1200},
            },
        )
    ).json()
    segment = (
        await stack.call(
            "POST",
            "/segments",
            json={"tenantId": stack.tenant, "name": "one", "type": "STATIC", "customerIds": [customer["id"]]},
        )
    ).json()
    email = await create(
        stack,
        channel="EMAIL",
        subject="{{ firstName }}, {{ attributes.points * 2 }} points\nfor you",
        html=(
            "<html><body><p>Hi {{ firstName }} {{ lastName }},</p>"
            "{% if attributes.tier == 'gold' %}<p>Gold perks: "
            '<a href="https://example.com/perks">see them</a></p>{% endif %}</body></html>'
        ),
    )
    sms = await create(stack, channel="SMS", body="{{ firstName }}: {{ attributes.tier|upper }} day! €5 off")
    previews = {}
    for template in (email, sms):
        r = await stack.call(
            "POST", f"/templates/{template['id']}/preview", json={"customerId": customer["id"]}
        )
        assert r.status_code == 200, r.text
        previews[template["channel"]] = r.json()

    r = await stack.call(
        "POST",
        "/campaigns",
        json={
            "tenantId": stack.tenant,
            "name": "preview check",
            "type": "ONE_TIME",
            "segmentId": segment["id"],
            "channels": ["EMAIL", "SMS"],
            "emailTemplateId": email["id"],
            "smsTemplateId": sms["id"],
        },
    )
    campaign_id = r.json()["id"]
    assert (await stack.call("POST", f"/campaigns/{campaign_id}/execute")).status_code == 200
    await wait_for(stack, campaign_id, "COMPLETED")

    [text] = [m for m in stack.sms.messages if m.to == customer["phone"]]
    assert text.body == previews[Channel.SMS]["body"] == "Zoë: GOLD day! €5 off"
    assert previews[Channel.SMS]["encoding"] == "UCS-2"  # ë

    [mail] = [m for m in stack.smtp.snapshot() if m.to == customer["email"]]
    preview = previews[Channel.EMAIL]
    assert mail.message["Subject"] == preview["subject"] == "Zoë, 2400 points for you"
    # What was sent is the preview with tracking applied for that delivery, and nothing else.
    envelope = EmailEnvelope(
        delivery_id=mail.message["X-Delivery-Id"],
        campaign_id=campaign_id,
        tenant_id=stack.tenant,
        customer_id=customer["id"],
        sender=stack.settings.email_from,
        to=customer["email"],
    )
    links = tracking_links(stack.settings.public_url, stack.settings.tracking_secret)
    expected, _ = tracked_parts(
        EmailParts(preview["subject"], preview["html"], preview["text"]), envelope, links
    )
    assert mail.part("html") == expected.html
    assert mail.part("plain").replace("\r\n", "\n") == expected.text
    assert "Hi Zoë &lt;Lee&gt;," in preview["html"] and preview["text"].startswith("Hi Zoë <Lee>,")
