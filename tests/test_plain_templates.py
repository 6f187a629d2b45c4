"""Plain templates render in the caller exactly as Jinja's sandbox renders them in a render process
(providers/plain_templates.py): compared over generated templates and recipients, and through the
pool, whose processes must not be asked for what renders in the caller."""

import random
from typing import Any

import pytest

from providers.email_content import render_parts
from providers.plain_templates import (
    NotPlain,
    plain_emails,
    plain_renderer,
    plain_sms,
    plain_template,
    render_plain,
)
from providers.render_pool import EmailSource, RenderPool, RenderProblem
from providers.rendering import TemplateSyntaxProblem, recipient_context, render

FIELDS = ["firstName", "lastName", "email", "phone", "clubId", "externalId"]
KEYS = ["tier", "city", "n", "flag", "nothing", "score", "items", "get", "pop", "nested", "list"]
LITERALS = [
    "Hi ",
    ", ",
    "!",
    "\n",
    "\r\n",
    "\r",
    " { ",
    "}",
    "}}",
    "{ {",
    "<b>&amp;</b>",
    "café ☕",
    "\t",
    "a\n\n",
    '<a href="https://example.com/x?a=1&b=2">go</a>',
    "1 < 2 & 3 > 2",
    "'\"",
    "%s {0}",
    "\\",
]
SPACES = ["", " ", "  ", "\n", "\t", " \n "]
VALUES: list[Any] = [
    "Ann",
    "<script>alert(1)</script>",
    'O\'Brien & "Co"',
    "",
    "ümlaut €",
    "a\r\nb",
    7,
    0,
    -3,
    2.5,
    1e21,
    True,
    False,
    None,
    ["x"],
    {"a": 1},
]


def _template(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(0, 6)):
        out.append(rng.choice(LITERALS))
        if rng.random() < 0.7:
            name = rng.choice(FIELDS) if rng.random() < 0.5 else f"attributes.{rng.choice(KEYS)}"
            out.append("{{" + rng.choice(SPACES) + name + rng.choice(SPACES) + "}}")
    if rng.random() < 0.3:
        out.append(rng.choice(["\n", "\r\n", "\n\n", "\r"]))
    return "".join(out)


def _context(rng: random.Random) -> dict[str, Any]:
    customer: dict[str, Any] = {
        "first_name": rng.choice(["Ann", "<i>Bo</i>", "", None, "Zoë & Al"]),
        "last_name": rng.choice(["Lee", "", None]),
        "email": "ann@example.com",
        "phone": "+15555550100",
        "club_id": "club_1",
        "external_id": rng.choice(["x-1", None]),
        "attributes": {k: rng.choice(VALUES) for k in rng.sample(KEYS, rng.randint(0, len(KEYS)))},
    }
    return recipient_context(customer)


def _jinja(source: str, context: dict[str, Any], html: bool) -> str | None:
    try:
        return render(source, context, html=html)
    except TemplateSyntaxProblem:
        return None


@pytest.mark.parametrize("html", [False, True])
def test_a_plain_render_is_jinjas_render(html: bool) -> None:
    rng = random.Random(20261204 + html)
    compared = fell_back = not_plain = 0
    for _ in range(3000):
        source = _template(rng)
        template = plain_template(source)
        if template is None:  # literal braces next to a field or a `%`: `{{{ x }}`, `{%`
            not_plain += 1
            continue
        context = _context(rng)
        try:
            ours = render_plain(template, context, html=html)
        except NotPlain:
            fell_back += 1
            continue
        assert ours == _jinja(source, context, html), (source, context)
        compared += 1
    assert compared > 2000 and fell_back > 50 and not_plain < 600  # both paths were taken


@pytest.mark.parametrize(
    "source",
    [
        "{% if firstName %}Hi{% endif %}",
        "{# note #}Hi",
        "{{ firstName | upper }}",
        "{{- firstName }}",
        "{{ firstName -}}",
        "{{{ firstName }}",
        "{{ attributes['tier'] }}",
        "{{ attributes . tier }}",
        "{{ attributes._private }}",
        "{{ attributes }}",
        "{{ firstName ~ lastName }}",
        "{{ unknown }}",
        "{{ firstName }",
        "Hi {{ firstName }}, {{ 'x' }}",
        "{{\x0bfirstName }}",
        "x" * 20_001,
    ],
)
def test_anything_else_is_not_plain(source: str) -> None:
    assert plain_template(source) is None


def test_sms_and_email_fall_back_per_recipient_and_per_template() -> None:
    ann = recipient_context({"first_name": "Ann", "attributes": {"tier": "gold"}})
    listed = recipient_context({"first_name": "Bo", "attributes": {"tier": ["gold"]}})
    assert plain_sms("Hi {{ firstName }}, {{ attributes.tier }}", [ann, listed]) == ["Hi Ann, gold", None]
    assert plain_sms("{{ firstName | upper }}", [ann]) == [None]
    long = recipient_context({"first_name": "Cy", "attributes": {"tier": "g" * 60_000}})
    assert plain_sms("{{ attributes.tier }}", [long, ann]) == [None, "gold"]  # over MAX_PLAIN_OUTPUT
    html = '<p>{{ attributes.tier }} <a href="https://e.com">x</a>'
    source = EmailSource("Hello {{ firstName }}\n", html, "t")
    ours = plain_emails(source.subject, source.html, source.text, [ann, listed])
    jinja = render_parts(source.subject, source.html, source.text, ann)
    assert ours == [jinja, None]
    assert ours[0] is not None and ours[0].links == jinja.links
    derived = "{% filter html_to_text %}{% autoescape true %}<p>x</p>{% endautoescape %}{% endfilter %}"
    assert plain_emails("s", "<p>x</p>", derived, [ann]) == [None]
    renderer = plain_renderer("Hi {{ firstName }}", None, "")
    assert renderer is not None and renderer(None, ann) == ""


async def test_the_pool_renders_plain_templates_without_its_processes() -> None:
    pool = RenderPool(processes=1)
    try:
        ann = recipient_context({"first_name": "Ann", "attributes": {"tier": "gold"}})
        listed = recipient_context({"first_name": "Bo", "attributes": {"tier": ["gold", "x"]}})
        assert await pool.render_sms("t", "Hi {{ firstName }}", [ann] * 3) == ["Hi Ann"] * 3
        assert pool.pids() == [None]  # no render process was started for them
        long_body = "x" * 150 + "{{ firstName }}" + "y" * 2000
        (too_long,) = await pool.render_sms("t", long_body, [ann])
        assert isinstance(too_long, RenderProblem) and too_long.reason == "TOO_LONG"
        assert pool.pids() == [None]
        # One recipient a process must render: only that one goes there, in order.
        results = await pool.render_sms("t", "{{ attributes.tier }}!", [ann, listed, ann])
        assert results == ["gold!", "['gold', 'x']!", "gold!"]
        assert pool.pids() != [None]
    finally:
        await pool.close()
