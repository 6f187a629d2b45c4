"""Hardening: template rendering under bounds, NUL characters in campaign bodies, type-safe DYNAMIC
segment filters, and writes committed before the response is sent (contract §4, §7)."""

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Message

from api.deps import AppState
from api.main import create_app
from core.enums import SegmentType
from core.ids import new_id
from db.audience import member_ids_query, segment_size
from db.models import Campaign, Customer, Segment
from db.segment_filter import FilterError, compile_filter
from providers import rendering
from providers.rendering import (
    MAX_RENDERED_CHARS,
    MAX_TEMPLATE_CHARS,
    TemplateSyntaxProblem,
    check_syntax,
    recipient_context,
    render,
)
from tests.conftest import StackFactory

ROOT = Path(__file__).resolve().parents[1]


def problem(r: httpx.Response, status: int, *paths: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    for path in paths:
        assert path in [e["path"] for e in body.get("errors", [])], body
    return body


# ---- templates: every failure is a TemplateSyntaxProblem ------------------------------------------------

CTX = recipient_context(
    {"first_name": "Ann", "attributes": {"plan": "gold", "age": "abc", "n": 3, "s": "x" * 60_000}}
)


@pytest.mark.parametrize(
    "source",
    [
        "{{ 1/0 }}",
        "{{ 10 // 0 }}",
        "{{ attributes.age + 1 }}",
        "{{ attributes.plan * 'x' }}",
        "{% for x in 5 %}{% endfor %}",
        "{% include 'other' %}",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        "{{ 2 ** 100000 }}",
        "{{" + "(" * 3000 + "1" + ")" * 3000 + "}}",
    ],
)
@pytest.mark.parametrize("html", [False, True])
def test_any_render_failure_is_a_short_template_problem(source: str, html: bool) -> None:
    with pytest.raises(TemplateSyntaxProblem) as caught:
        render(source, CTX, html=html)
    assert 0 < len(str(caught.value)) <= 201


@pytest.mark.parametrize("name", ["range", "dict", "lipsum", "cycler", "joiner", "namespace"])
def test_jinja_default_globals_are_not_visible(name: str) -> None:
    assert render("{{ " + name + " }}", CTX) == ""  # undefined, like any name not the recipient's
    with pytest.raises(TemplateSyntaxProblem):
        render("{{ " + name + "() }}", CTX)


def test_templates_still_render_as_before() -> None:
    ctx = recipient_context(
        {
            "first_name": "Ann",
            "last_name": None,
            "attributes": {"points": 1234, "vip": True, "items": ["a", "b", "c"], "price": 3.14159},
        }
    )
    source = (
        "Hi {{ firstName|title }}{% if attributes.vip %} (VIP){% endif %}, {{ attributes.points * 2 }} "
        "{{ '%.2f'|format(attributes.price) }} {{ '{} {}'.format(firstName, lastName|default('-', true)) }} "
        "{% for i in attributes['items'] %}{{ loop.index }}{{ i }}{{ ',' if not loop.last }}{% endfor %} "
        "{% macro b(x) %}[{{ x }}|{{ caller() }}]{% endmacro %}"
        "{% call b(1) %}{{ 'in' ~ 'ner' }}{% endcall %} "
        "{{ attributes['items']|join('-') }} {{ 2 ** 10 }} {{ 'ab' * 2 }} {{ attributes }}"
    )
    assert render(source, ctx) == (
        "Hi Ann (VIP), 2468 3.14 Ann - 1a,2b,3c [1|inner] a-b-c 1024 abab "
        "{'points': 1234, 'vip': True, 'items': ['a', 'b', 'c'], 'price': 3.14159}"
    )
    assert render("<p>{{ firstName ~ '<b>' }}</p>", ctx, html=True) == "<p>Ann&lt;b&gt;</p>"


def test_template_source_and_output_sizes_are_capped() -> None:
    check_syntax("x" * MAX_TEMPLATE_CHARS)
    with pytest.raises(TemplateSyntaxProblem, match="at most"):
        check_syntax("x" * (MAX_TEMPLATE_CHARS + 1))
    with pytest.raises(TemplateSyntaxProblem):
        render("x" * (MAX_TEMPLATE_CHARS + 1), CTX)
    # 60,000 characters written 20 times: over the 1 MB of a rendered message.
    source = "{{ attributes.s }}" * (MAX_RENDERED_CHARS // 60_000 + 1)
    for html in (False, True):
        with pytest.raises(TemplateSyntaxProblem, match="exceeds"):
            render(source, CTX, html=html)


def test_compiled_template_cache_is_bounded() -> None:
    short, long = rendering._compiled_short.cache_info(), rendering._compiled_long.cache_info()
    assert short.maxsize is not None and short.maxsize <= 128
    assert long.maxsize is not None and long.maxsize <= 16
    # At most 128 short sources plus 16 long ones (each at most MAX_TEMPLATE_CHARS) are held.
    for i in range(200):
        render(f"{i} {{{{ firstName }}}}", CTX)
    assert rendering._compiled_short.cache_info().currsize <= 128


# Templates that, unbounded, take minutes or gigabytes: each is rendered in a child process (with its
# address space limited, so a regression fails instead of exhausting the machine) and must be refused.
BOMBS = [
    "{{ 9 ** (9 ** 9) }}",
    "{{ (2 ** 8000) * (2 ** 8000) }}",
    "{{ 'x' * 10 ** 9 }}",
    "{{ [0] * 10 ** 9 }}",
    "{{ 'x' * 1000000000 }}",
    "{% for a in attributes.s %}{% for b in attributes.s %}{% for c in attributes.s %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "{% set x = attributes.s %}" + "{% set x = x ~ x %}" * 30 + "{{ x|length }}",
    "{% set x = [attributes.s] %}" + "{% set x = [x, x] %}" * 30 + "{{ x }}",
    "{% set x %}" + "{{ attributes.s }}" * 2000 + "{% endset %}{{ x|length }}",
    "{{ 'x'|center(10 ** 9) }}",
    "{{ 'x'.ljust(10 ** 9) }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ '%999999999s'|format(1) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ attributes.s|replace('', attributes.s) }}",
    "{{ 1.5|round(10 ** 9, 'ceil') }}",
    "{{ (1).to_bytes(10 ** 9, 'big') }}",
]
BOMB_SCRIPT = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from providers.rendering import TemplateSyntaxProblem, recipient_context, render
ctx = recipient_context({"attributes": {"s": "x" * 1000}})
start = time.monotonic()
try:
    out = render(sys.argv[1], ctx, html=sys.argv[2] == "html")
    result = f"rendered {len(out)} characters"
except TemplateSyntaxProblem as err:
    result = "refused: " + str(err)
except BaseException as err:
    result = f"raised {type(err).__name__}"
print(json.dumps({"result": result, "seconds": time.monotonic() - start}))
"""


@pytest.mark.parametrize("source", BOMBS)
def test_templates_cannot_exhaust_cpu_or_memory(source: str) -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-c", BOMB_SCRIPT, source, "html"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the template was still rendering after 60 s")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["result"].startswith("refused: "), report
    assert report["seconds"] < 2.0, report


def test_a_render_stops_after_its_loop_budget() -> None:
    ctx = recipient_context({"attributes": {"s": "x" * 200}})
    source = "{% for a in attributes.s %}{% for b in attributes.s %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(TemplateSyntaxProblem, match="loop iterations"):
        render(source, ctx)
    assert time.monotonic() - started < 1.0
    # A budget is per render: the same template renders again, and a small loop is fine.
    assert render("{% for a in attributes.s %}.{% endfor %}", ctx) == "." * 200


# ---- NUL characters in campaign bodies -------------------------------------------------------------------


async def test_a_nul_character_in_a_campaign_body_is_a_422_and_changes_nothing(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(worker=False)

    async def campaigns() -> list[dict[str, Any]]:
        async with stack.engine.connect() as conn:
            rows = await conn.execute(select(Campaign.__table__).where(Campaign.tenant_id == stack.tenant))
            return [dict(r) for r in rows.mappings()]

    base = {"tenantId": stack.tenant, "name": "Spring", "channels": ["EMAIL"]}
    for field, value in [
        ("name", "Spr\u0000ing"),
        ("description", "a\u0000"),
        ("clubId", "club\u0000"),
        ("timezone", "Europe/Paris\u0000"),
        ("conversionEvent", "\u0000"),
        ("segmentId", "segment\u0000"),
    ]:
        r = await stack.call("POST", "/campaigns", json={**base, field: value})
        problem(r, 422, f"$.{field}")
    problem(await stack.call("POST", "/campaigns", json={**base, "tenantId": "t\u0000"}), 422, "$.tenantId")
    assert await campaigns() == []

    created = await stack.call("POST", "/campaigns", json={**base, "description": "first"})
    assert created.status_code == 201, created.text
    before = await campaigns()
    campaign_id = created.json()["id"]
    for field in ("name", "description", "timezone", "conversionEvent"):
        r = await stack.call("PATCH", f"/campaigns/{campaign_id}", json={field: "x\u0000y"})
        problem(r, 422, f"$.{field}")
    assert await campaigns() == before
    assert before[0]["name"] == "Spring" and before[0]["description"] == "first"


# ---- DYNAMIC segment filters are type-safe ---------------------------------------------------------------

MIXED: dict[str, dict[str, Any]] = {
    "num40": {"age": 40, "tier": "gold", "vip": True},
    "num25": {"age": 25, "tier": "silver", "vip": False},
    "float": {"age": 30.5, "tier": 7},
    "text": {"age": "abc", "tier": "gold-plus", "vip": "true"},
    "textnum": {"age": "50", "tier": None},
    "bool": {"age": True, "tier": True, "vip": 1},
    "huge": {"age": 10**400, "tier": ["gold"]},
    "object": {"age": {"years": 60}, "tier": {"name": "gold"}},
    "missing": {},
}


async def mixed_audience(engine: AsyncEngine) -> tuple[str, dict[str, str]]:
    tenant = f"tenant_mixed_{uuid.uuid4().hex[:8]}"
    ids = {name: new_id("customer") for name in MIXED}
    rows = [
        {"id": ids[name], "tenant_id": tenant, "external_id": name, "attributes": attributes}
        for name, attributes in MIXED.items()
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(Customer), rows)
    return tenant, ids


async def members(engine: AsyncEngine, tenant: str, ids: dict[str, str], filter_: dict[str, Any]) -> set[str]:
    segment = Segment(
        id=new_id("segment"), tenant_id=tenant, name="s", type=SegmentType.DYNAMIC, filter=filter_
    )
    names = {v: k for k, v in ids.items()}
    async with engine.connect() as conn:
        found = {names[i] for i in (await conn.execute(member_ids_query(segment))).scalars()}
        assert await segment_size(conn, segment) == len(found)
    return found


async def test_attribute_comparisons_only_match_values_of_their_json_type(engine: AsyncEngine) -> None:
    tenant, ids = await mixed_audience(engine)
    everyone = set(MIXED)

    async def match(field: str, op: str, value: Any) -> set[str]:
        return await members(engine, tenant, ids, {"field": f"attributes.{field}", "op": op, "value": value})

    # Numbers compare only with numbers (exactly, and past the range of a float); text never fails.
    assert await match("age", "gt", 30) == {"num40", "float", "huge"}
    assert await match("age", "gte", 30.5) == {"num40", "float", "huge"}
    assert await match("age", "lt", 30) == {"num25"}
    assert await match("age", "lte", 10**401) == {"num40", "num25", "float", "huge"}
    assert await match("age", "eq", 40) == {"num40"}
    assert await match("age", "eq", 40.0) == {"num40"}
    assert await match("age", "eq", "50") == {"textnum"}
    # `not` is the exact complement: a value of another type is "not greater than 30".
    negated = {"not": {"field": "attributes.age", "op": "gt", "value": 30}}
    assert await members(engine, tenant, ids, negated) == everyone - {"num40", "float", "huge"}

    # Text compares only with text.
    assert await match("tier", "lt", "h") == {"num40", "text"}
    assert await match("tier", "gte", "a") == {"num40", "num25", "text"}
    assert await match("tier", "contains", "OLD") == {"num40", "text"}
    assert await match("tier", "startsWith", "7") == set()
    assert await match("tier", "in", ["gold", 7]) == {"num40", "float"}
    assert await match("tier", "nin", ["gold", 7]) == everyone - {"num40", "float"}

    # Booleans match only booleans.
    assert await match("vip", "eq", True) == {"num40"}
    assert await match("vip", "ne", True) == everyone - {"num40"}
    assert await match("tier", "exists", True) == everyone - {"missing"}

    # Data of any type never fails a whole filter.
    mixed = {
        "any": [
            {"field": "attributes.age", "op": "gt", "value": 45},
            {"field": "attributes.tier", "op": "contains", "value": "silver"},
            {"not": {"field": "attributes.vip", "op": "lte", "value": 0}},
        ]
    }
    assert await members(engine, tenant, ids, mixed) == everyone


async def test_field_values_must_suit_the_field(engine: AsyncEngine) -> None:
    tenant, ids = await mixed_audience(engine)
    everyone = set(MIXED)

    def error(filter_: dict[str, Any]) -> FilterError:
        with pytest.raises(FilterError) as caught:
            compile_filter(filter_)
        return caught.value

    assert error({"field": "createdAt", "op": "gt", "value": "yesterday"}).path == "filter.value"
    assert error({"field": "createdAt", "op": "gt", "value": 20240101}).path == "filter.value"
    bad_list = {"field": "createdAt", "op": "in", "value": ["2024-01-01T00:00:00Z", "2024-13-01"]}
    assert error(bad_list).path == "filter.value[1]"
    assert error({"field": "createdAt", "op": "contains", "value": "2024"}).path == "filter.op"
    assert error({"field": "emailOptIn", "op": "eq", "value": "yes"}).path == "filter.value"
    assert error({"field": "smsOptIn", "op": "startsWith", "value": "t"}).path == "filter.op"
    assert error({"field": "clubId", "op": "eq", "value": 5}).path == "filter.value"
    assert (
        error({"all": [{"field": "email", "op": "in", "value": ["a@b.c", 1]}]}).path
        == "filter.all[0].value[1]"
    )
    assert error({"field": "attributes.age", "op": "gt", "value": float("nan")}).path == "filter.value"
    assert error({"field": "attributes.age", "op": "eq", "value": float("inf")}).path == "filter.value"
    assert error({"field": "attributes.age", "op": "in", "value": [1, [2]]}).path == "filter.value[1]"

    created = {"field": "createdAt", "op": "gte", "value": "2000-01-01"}
    assert await members(engine, tenant, ids, created) == everyone
    assert await members(engine, tenant, ids, {**created, "op": "lt"}) == set()
    zoned = {"field": "createdAt", "op": "lt", "value": "2999-01-01T00:00:00+02:00"}
    assert await members(engine, tenant, ids, zoned) == everyone
    assert await members(engine, tenant, ids, {"field": "emailOptIn", "op": "eq", "value": True}) == everyone


async def test_a_dynamic_segment_over_mixed_data_is_measured_not_refused(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    customers = [
        {"externalId": "a", "attributes": {"age": 40}},
        {"externalId": "b", "attributes": {"age": "abc"}},
        {"externalId": "c", "attributes": {"age": 20}},
    ]
    r = await stack.call("POST", "/customers/import", json={"tenantId": stack.tenant, "customers": customers})
    assert r.status_code == 200, r.text
    body = {
        "tenantId": stack.tenant,
        "name": "over 30",
        "type": "DYNAMIC",
        "filter": {"field": "attributes.age", "op": "gt", "value": 30},
    }
    r = await stack.call("POST", "/segments", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["size"] == 1
    bad_date = {**body, "filter": {"field": "createdAt", "op": "gt", "value": "soon"}}
    problem(await stack.call("POST", "/segments", json=bad_date), 422, "$.filter.value")


# ---- a write is committed before its response is sent ----------------------------------------------------


async def test_a_write_is_committed_before_the_response_is_sent(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    app = create_app(stack.settings, AppState(settings=stack.settings, engine=stack.engine, control=None))
    payload = json.dumps({"tenantId": stack.tenant, "externalId": "durable-1", "email": "d@example.com"})
    body = payload.encode()
    headers = [(k.lower().encode(), v.encode()) for k, v in stack.headers().items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/customers",
        "raw_path": b"/customers",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: dict[str, Any] = {}
    finished = asyncio.Event()
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            # The client holds the whole response now: another connection must see the customer.
            async with stack.engine.connect() as conn:
                query = select(func.count()).select_from(Customer).where(Customer.tenant_id == stack.tenant)
                sent["visible"] = (await conn.execute(query)).scalar_one()
            finished.set()

    await app(scope, receive, send)
    assert sent == {"status": 201, "visible": 1}
