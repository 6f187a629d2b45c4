"""Hardening: template rendering under bounds, NUL characters in campaign bodies, type-safe DYNAMIC
segment filters, and writes committed before the response is sent (README "API at a glance",
"Consent and suppression")."""

import ast
import asyncio
import json
import logging
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Message

from api.deps import AppState
from api.main import create_app
from core.enums import SegmentType
from core.ids import new_id
from core.logs import JsonFormatter, TextFormatter
from core.settings import DEV_SECRET, Settings
from db.audience import member_ids_query, segment_size
from db.models import Campaign, Customer
from db.segment_filter import FilterError, compile_filter
from db.segments import SegmentRow
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
    now = datetime.now(UTC)
    segment = SegmentRow(
        id=new_id("segment"),
        tenant_id=tenant,
        club_id=None,
        name="s",
        description=None,
        type=SegmentType.DYNAMIC,
        filter=filter_,
        created_at=now,
        updated_at=now,
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


# ---- issue 8: limits on lists, strings and bodies ----------------------------------------------------

# Request fields without a length/size bound in the OpenAPI document, each with what bounds it instead.
# A new unbounded string, list or open object fails the test until it gets a bound or a line here.
UNBOUNDED_BY_DESIGN = {
    r"path:\w+_id$": "a path segment: within the HTTP server's request-line limit; compared by equality",
    r"\.channels$": "enum items that may not repeat: at most one per channel",
    r"\.schedule\.time$": "validated as HH:MM",
    r"\.email$": "validated: at most 320 characters (api.schemas.customers.check_email)",
    r"\.phone$": "validated: E.164, at most 16 characters",
    r"\.attributes$": "JSON object: at most 64 KiB (check_attributes); preview samples are never stored",
    r"\.(filter|triggerConditions|data)$": "JSON object: bounded by the 1 MiB body limit, validated",
    r"body\(text/csv\)$": "the import's CSV: the 64 MiB import body limit and 100,000 rows",
    r"/preview body\(application/json\)\.sample\.\w+$": "a sample recipient: never stored, output capped",
    r"\.policy\.quietHours$": "an object keyed by channel (EMAIL, SMS): at most two entries",
    r"/settings body\(application/json\)\.policy$": "merged into the tenant policy, then validated as one",
}


def _unbounded_request_fields(spec: dict[str, Any]) -> list[str]:
    schemas = spec["components"]["schemas"]

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = schemas[node["$ref"].rsplit("/", 1)[1]]
        return node

    found: list[str] = []

    def walk(node: dict[str, Any], path: str, depth: int = 0) -> None:
        node = resolve(node)
        if depth > 12:
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in node.get(key, []):
                walk(sub, path, depth + 1)
        kind = node.get("type")
        bounded = any(k in node for k in ("maxLength", "enum", "const")) or node.get("format") in (
            "date-time",
            "date",
        )
        if kind == "string" and not bounded:
            found.append(path)
        if kind == "array":
            if "maxItems" not in node:
                found.append(path)
            walk(node.get("items", {}), path + "[]", depth + 1)
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{name}", depth + 1)
        if kind == "object" and ("properties" not in node or node.get("additionalProperties")):
            found.append(path)

    for route, operations in spec["paths"].items():
        for method, op in operations.items():
            for param in op.get("parameters", []):
                walk(param["schema"], f"{method.upper()} {route} {param['in']}:{param['name']}")
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                walk(content["schema"], f"{method.upper()} {route} body({media})")
    return sorted(set(found))


def test_every_request_string_and_list_is_bounded() -> None:
    spec = create_app(Settings(environment="test")).openapi()
    unexplained = [
        field
        for field in _unbounded_request_fields(spec)
        if not any(re.search(pattern, field) for pattern in UNBOUNDED_BY_DESIGN)
    ]
    assert not unexplained, f"give these a maxLength/maxItems (or a reason above): {unexplained}"


async def test_every_list_endpoint_caps_take_and_skip(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    created = await stack.call(
        "POST", "/campaigns", json={"tenantId": stack.tenant, "name": "lists", "channels": ["EMAIL"]}
    )
    assert created.status_code == 201, created.text
    ids = {"campaign_id": created.json()["id"]}
    spec = create_app(stack.settings).openapi()
    admin = stack.admin_headers()  # some lists (webhook endpoints) are the administrator's alone
    lists = [
        (route, {p["name"]: p for p in op.get("parameters", [])})
        for route, operations in spec["paths"].items()
        for method, op in operations.items()
        if method == "get" and any(p["name"] == "take" for p in op.get("parameters", []))
    ]
    assert len(lists) >= 6, lists
    for route, params in lists:
        path = re.sub(r"{(\w+)}", lambda m: ids[m.group(1)], route)
        query = {"tenantId": stack.tenant} if "tenantId" in params else {}
        take = params["take"]["schema"]
        assert take.get("maximum", 10**9) <= 1000 and take.get("minimum") == 1, (route, take)
        ok = await stack.api.get(path, params={**query, "take": take["maximum"]}, headers=admin)
        assert ok.status_code == 200 and ok.json()["meta"]["take"] == take["maximum"], (route, ok.text)
        for bad in ({"take": take["maximum"] + 1}, {"take": 0}, {"skip": -1}, {"skip": 10**12}):
            r = await stack.api.get(path, params={**query, **bad}, headers=admin)
            body = problem(r, 422)
            assert body["errors"][0]["path"] == f"query.{next(iter(bad))}", (route, bad, body)


async def test_a_streamed_body_over_the_limit_is_a_413_and_writes_nothing(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False, max_body_bytes=64 * 1024)
    piece = json.dumps({"tenantId": stack.tenant, "externalId": "big", "firstName": "x" * 200}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length (chunked): the limit is enforced while the body streams in.
        yield piece[:-1] + b', "attributes": {"pad": "'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"}}'

    r = await stack.api.post(
        "/customers", content=chunks(), headers={**stack.headers(), "Content-Type": "application/json"}
    )
    problem(r, 413)
    r = await stack.call("GET", "/customers", params={"tenantId": stack.tenant})
    assert r.json()["meta"]["total"] == 0
    # The same body under the limit is accepted: the limit, not the shape, refused it.
    small = await stack.api.post(
        "/customers", content=piece, headers={**stack.headers(), "Content-Type": "application/json"}
    )
    assert small.status_code == 201, small.text


# ---- issue 8: SQL is built from code, values are bound ------------------------------------------------

PRODUCTION_PACKAGES = ("api", "db", "activities", "providers", "core", "workflows", "devstack")
# SQL text assembled at run time, reviewed: only identifiers from code constants are interpolated,
# every value is a bind parameter.
REVIEWED_DYNAMIC_SQL = {
    ("db/customer_import.py", "_statement"): "column names from COLUMNS, values in a jsonb parameter",
    ("db/customer_import.py", "upsert_customers"): "runs the statement _statement built",
    ("db/stats.py", "count_interactions"): "filter clauses from InteractionFilter.where: fixed columns",
    ("db/stats.py", "page_interactions"): "the same fixed clauses; skip/take bound",
    ("db/bench_seed.py", "seed_stats_campaign"): "benchmark seed: SQL fragments of the bench's own plan",
}
SQL_CALLS = {"text", "execute", "exec_driver_sql", "executemany"}


def _constant_name(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id.lstrip("_").isupper()


def _dynamic_sql_sites() -> set[tuple[str, str]]:
    """(file, function) of every SQL call whose text is neither a literal nor built from constants."""
    sites: set[tuple[str, str]] = set()
    for package in PRODUCTION_PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in file.parts:
                continue
            tree = ast.parse(file.read_text())
            for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]:
                for node in ast.walk(fn):
                    if not (isinstance(node, ast.Call) and node.args):
                        continue
                    name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                    arg = node.args[0]
                    if name not in SQL_CALLS or isinstance(arg, ast.Constant) or _constant_name(arg):
                        continue
                    if isinstance(arg, ast.JoinedStr):
                        parts = [v.value for v in arg.values if isinstance(v, ast.FormattedValue)]
                        if all(_constant_name(p) for p in parts):
                            continue
                    elif name == "execute" and not isinstance(arg, ast.BinOp | ast.Name):
                        continue  # execute(select(...)), execute(text(...)): checked at their own call
                    sites.add((file.relative_to(ROOT).as_posix(), fn.name))
    return sites


def test_sql_text_is_only_built_from_code() -> None:
    assert _dynamic_sql_sites() == set(REVIEWED_DYNAMIC_SQL)


INJECTIONS = ["' OR '1'='1", "x'; DROP TABLE customers; --", '") OR 1=1 --', "\\' OR 1=1 --", "%' OR '%'='"]


async def test_injection_attempts_are_plain_values(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    victim = await stack.call(
        "POST",
        "/customers",
        tenant=stack.other_tenant,
        json={"tenantId": stack.other_tenant, "externalId": "victim", "email": "victim@example.com"},
    )
    assert victim.status_code == 201, victim.text
    for value in INJECTIONS:
        for name in ("email", "externalId", "clubId"):
            r = await stack.call("GET", "/customers", params={"tenantId": stack.tenant, name: value})
            assert r.status_code == 200 and r.json()["meta"]["total"] == 0, (name, value, r.text)
        segment = {
            "tenantId": stack.tenant,
            "name": "probe",
            "type": "DYNAMIC",
            "filter": {
                "any": [
                    {"field": "email", "op": "eq", "value": value},
                    {"field": "email", "op": "contains", "value": value},
                    {"field": f"attributes.{value}", "op": "eq", "value": value},
                ]
            },
        }
        r = await stack.call("POST", "/segments", json=segment)
        assert r.status_code in (201, 422), r.text
        if r.status_code == 201:
            assert r.json()["size"] == 0, value
    # Stored verbatim, read back verbatim.
    body = {
        "tenantId": stack.tenant,
        "externalId": INJECTIONS[1],
        "firstName": INJECTIONS[0],
        "attributes": {INJECTIONS[2]: INJECTIONS[3]},
    }
    r = await stack.call("POST", "/customers", json=body)
    assert r.status_code == 201, r.text
    got = (await stack.call("GET", f"/customers/{r.json()['id']}")).json()
    assert (got["externalId"], got["firstName"], got["attributes"]) == (
        INJECTIONS[1],
        INJECTIONS[0],
        {INJECTIONS[2]: INJECTIONS[3]},
    )
    r = await stack.call("GET", f"/customers/{victim.json()['id']}", tenant=stack.other_tenant)
    assert r.status_code == 200  # the other tenant's data is all still there


# ---- issue 8: template sandbox, no way out -----------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ firstName.__class__.__base__.__subclasses__() }}",
    "{{ attributes.__class__.__init__.__globals__ }}",
    "{{ self.__init__.__globals__['__builtins__'] }}",
    "{{ self._TemplateReference__context }}",
    "{{ attributes|attr('__class__') }}",
    "{{ '{0.__class__.__init__.__globals__}'.format(firstName) }}",
    "{{ attributes.update({'x': 1}) }}",
    "{% import 'os' as os %}{{ os.environ }}",
    "{% include '/etc/passwd' %}",
    "{{ config }}{{ settings }}{{ request }}{{ environ }}{{ __builtins__ }}{{ os }}",
    "{{ cycler.__init__.__globals__.os.environ }}",
]
LEAK_MARKS = ("__", "<class", "module", "environ", "builtins", "Settings", "root:", DEV_SECRET)


@pytest.mark.parametrize("source", ESCAPES)
@pytest.mark.parametrize("html", [False, True])
def test_templates_cannot_reach_server_internals(source: str, html: bool) -> None:
    try:
        out = render(source, CTX, html=html)
    except TemplateSyntaxProblem:
        return
    assert not any(mark in out for mark in LEAK_MARKS), out[:300]


# ---- issue 8: secrets never logged -------------------------------------------------------------------


async def test_secrets_are_never_logged(make_stack: StackFactory, caplog: pytest.LogCaptureFixture) -> None:
    stack = await make_stack(
        worker=False,
        jwt_secret="jwt-secret-under-test-0123456789abcdef",
        webhook_secret="webhook-secret-under-test-0123456789",
        tracking_secret="tracking-secret-under-test-0123456789",
        sms_token="sms-token-under-test-0123456789",
        smtp_password="smtp-password-under-test-0123456789",
    )
    bearer = stack.headers()["Authorization"].split()[1]
    forged = jwt.encode(
        {"sub": "x", "tenant_id": stack.tenant}, "wrong-secret-0123456789-0123456789", "HS256"
    )
    caplog.set_level(logging.DEBUG)
    await stack.call("GET", "/campaigns", params={"tenantId": stack.tenant})
    await stack.call(
        "POST", "/campaigns", json={"tenantId": stack.tenant, "name": "x", "channels": ["EMAIL"]}
    )
    await stack.api.get("/campaigns", headers={"Authorization": f"Bearer {forged}"})
    await stack.api.get("/campaigns", headers={"Authorization": f"Bearer {bearer}x"})
    await stack.api.post(
        "/webhooks/email", content=b'{"events": []}', headers={"X-Campaigns-Signature": "sha256=00"}
    )
    secrets = [
        stack.settings.jwt_secret,
        stack.settings.webhook_secret,
        stack.settings.tracking_secret,
        stack.settings.sms_token,
        str(stack.settings.smtp_password),
        bearer,
        forged,
    ]
    assert caplog.records, "nothing was logged: the test would prove nothing"
    formatters = [logging.Formatter("%(message)s %(args)s"), JsonFormatter(), TextFormatter()]
    # The service's own records (the test client's httpx lines are the caller's, not ours).
    for record in [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]:
        for formatter in formatters:
            line = formatter.format(record)
            assert not [s for s in secrets if s in line], line[:500]


# ---- issue 8: Idempotency-Key ------------------------------------------------------------------------


async def test_concurrent_requests_with_one_idempotency_key_make_one_campaign(
    make_stack: StackFactory,
) -> None:
    """A client retrying on a timeout races its own first request: both get the one campaign."""
    stack = await make_stack(worker=False)
    body = {"tenantId": stack.tenant, "name": "Once", "channels": ["EMAIL"]}
    for _ in range(3):
        headers = {**stack.headers(), "Idempotency-Key": f"key-{uuid.uuid4().hex}"}
        answers = await asyncio.gather(
            *(stack.api.post("/campaigns", json=body, headers=headers) for _ in range(10))
        )
        assert sorted(r.status_code for r in answers) == [200] * 9 + [201], [r.text for r in answers]
        assert len({r.json()["id"] for r in answers}) == 1
    listed = (await stack.call("GET", "/campaigns", params={"tenantId": stack.tenant})).json()
    assert listed["meta"]["total"] == 3
    # Another body under the same key: a 409, also when it races.
    other_key = {**stack.headers(), "Idempotency-Key": f"key-{uuid.uuid4().hex}"}
    raced = await asyncio.gather(
        *(stack.api.post("/campaigns", json={**body, "name": f"v{i}"}, headers=other_key) for i in range(4))
    )
    assert sorted(r.status_code for r in raced) == [201, 409, 409, 409], [r.text for r in raced]


async def test_an_idempotency_key_belongs_to_one_tenant_and_is_bounded(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    key = {"Idempotency-Key": f"key-{uuid.uuid4().hex}"}
    mine = {"tenantId": stack.tenant, "name": "Mine", "channels": ["EMAIL"]}
    theirs = {**mine, "tenantId": stack.other_tenant}
    a = await stack.api.post("/campaigns", json=mine, headers={**stack.headers(), **key})
    b = await stack.api.post("/campaigns", json=theirs, headers={**stack.headers(stack.other_tenant), **key})
    assert (a.status_code, b.status_code) == (201, 201) and a.json()["id"] != b.json()["id"]
    long_key = {**stack.headers(), "Idempotency-Key": "k" * 201}
    problem(await stack.api.post("/campaigns", json=mine, headers=long_key), 422)


async def test_a_token_must_expire(make_stack: StackFactory) -> None:
    """A token without `exp` would be a credential forever; one with it is accepted until then."""
    stack = await make_stack(worker=False)
    claims: dict[str, Any] = {"sub": "user_a", "tenant_id": stack.tenant}
    forever = jwt.encode(claims, stack.settings.jwt_secret, "HS256")
    r = await stack.api.get(
        "/campaigns", params={"tenantId": stack.tenant}, headers={"Authorization": f"Bearer {forever}"}
    )
    problem(r, 401)
    exp = int(time.time()) + 60
    expiring = jwt.encode({**claims, "exp": exp}, stack.settings.jwt_secret, "HS256")
    r = await stack.api.get(
        "/campaigns", params={"tenantId": stack.tenant}, headers={"Authorization": f"Bearer {expiring}"}
    )
    assert r.status_code == 200, r.text


async def test_a_413_means_nothing_was_done_even_if_the_first_part_is_a_whole_request(
    make_stack: StackFactory,
) -> None:
    """The part of an oversized body that arrived before the limit can itself be a valid request (a
    whole JSON document, then padding): it must not be acted on behind the 413."""
    stack = await make_stack(worker=False, max_body_bytes=16 * 1024)
    document = json.dumps({"tenantId": stack.tenant, "externalId": "behind-413"}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield document
        for _ in range(40):
            yield b" " * 1024

    r = await stack.api.post(
        "/customers", content=chunks(), headers={**stack.headers(), "Content-Type": "application/json"}
    )
    problem(r, 413)

    async def csv_chunks() -> AsyncIterator[bytes]:
        yield b"externalId\nbehind-413-csv\n"
        for _ in range(40):
            yield b"\n" * 1024

    headers = {**stack.headers(), "Content-Type": "text/csv"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("api.limits.LARGE_BODY_LIMIT", 16 * 1024)
        r = await stack.api.post(
            "/customers/import", params={"tenantId": stack.tenant}, content=csv_chunks(), headers=headers
        )
    problem(r, 413)
    listed = await stack.call("GET", "/customers", params={"tenantId": stack.tenant})
    assert listed.json()["meta"]["total"] == 0, listed.text


async def test_a_token_for_several_tenants_sees_exactly_those(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    third = f"tenant_third_{uuid.uuid4().hex[:8]}"
    ids = {}
    for tenant in (stack.tenant, stack.other_tenant, third):
        body = {"tenantId": tenant, "name": f"of {tenant}", "channels": ["EMAIL"]}
        r = await stack.call("POST", "/campaigns", tenant=tenant, json=body)
        assert r.status_code == 201, r.text
        ids[tenant] = r.json()["id"]
    exp = int(time.time()) + 60
    claims = {"sub": "user_multi", "tenants": [stack.tenant, third, 7, None], "exp": exp}
    headers = {"Authorization": f"Bearer {jwt.encode(claims, stack.settings.jwt_secret, 'HS256')}"}
    for tenant, status in ((stack.tenant, 200), (third, 200), (stack.other_tenant, 404)):
        r = await stack.api.get(f"/campaigns/{ids[tenant]}", headers=headers)
        assert r.status_code == status, (tenant, r.text)
    for tenant, status in ((stack.tenant, 200), (third, 200), (stack.other_tenant, 403)):
        r = await stack.api.get("/campaigns", params={"tenantId": tenant}, headers=headers)
        assert r.status_code == status, (tenant, r.text)
        if status == 200:
            assert [c["id"] for c in r.json()["data"]] == [ids[tenant]]
