"""Bounded parsing and total input validation (issue 13): one tenant's input cannot slow the API for
the others, nor turn into a 500.

- A CSV import's header is bounded (columns) and checked in linear time, before any row is read.
- A DYNAMIC filter's `in`/`nin` lists are bounded; the database cuts any statement over its time
  limit, and the API answers such a cut with a 503 and Retry-After.
- Stored JSON (customer attributes, event data) is bounded in depth, values and key length at every
  door; rows stored before still list.
- Every instant is within the supported years, every number finite, every string storable, in
  bodies and query parameters alike; a batch records its valid items and reports the others.
"""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi.routing import APIRoute
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.deps import AppState
from api.errors import api_routes
from api.main import create_app
from core.ids import new_id
from db import engine as db_engine
from db.models import Campaign, Customer, Segment
from tests.attack import api_process, unaffected
from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign
from tests.test_stats import build_ledger, signed_post

PROBLEM = "application/problem+json"


def problem(r: httpx.Response, status: int, path: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == PROBLEM, r.headers
    body: dict[str, Any] = r.json()
    if path is not None:
        assert path in [e["path"] for e in body.get("errors", [])], body
    return body


async def raw_post(stack: Stack, path: str, body: str, **params: str) -> httpx.Response:
    """POST a body as written: JSON with NaN, Infinity or lone surrogates cannot be built otherwise."""
    headers = stack.headers() | {"Content-Type": "application/json"}
    return await stack.api.post(path, content=body.encode(), headers=headers, params=params)


async def count(engine: AsyncEngine, table: str, tenant: str) -> int:
    # `table` comes from the tests' own literals only.
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"), {"t": tenant})
            ).scalar_one()
        )


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


# ---- class 2: a CSV header of 60,000 columns -----------------------------------------------------


async def test_wide_csv_header_is_refused_at_once_and_others_keep_their_latency(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(worker=False)
    header = ",".join(["externalId", *(f"attributes.k{i}" for i in range(60_000))])
    body = (header + "\n" + "m-1" + "," * 60_000 + "\n").encode()
    headers = stack.headers() | {"Content-Type": "text/csv"}

    async with api_process(stack) as base_url:

        async def attack() -> None:
            async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
                r = await client.post(
                    "/customers/import", params={"tenantId": stack.tenant}, content=body, headers=headers
                )
            assert problem(r, 422, "header")["detail"] == (
                "the header has 60001 columns; at most 1000 are allowed"
            )

        figures = await unaffected(base_url, attack)
    assert figures.rounds >= 3  # each refusal is quick (it took 17 s before the bound)
    assert await count(stack.engine, "customers", stack.tenant) == 0


async def test_csv_header_repeats_and_sizes_are_found_in_one_pass(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    headers = stack.headers() | {"Content-Type": "text/csv"}

    async def post(content: str) -> httpx.Response:
        return await stack.api.post(
            "/customers/import", params={"tenantId": stack.tenant}, content=content.encode(), headers=headers
        )

    # 1,000 columns is the most, and a repeat anywhere names its first occurrence.
    wide = ["externalId", *(f"attributes.k{i}" for i in range(998)), "attributes.k5"]
    body = problem(await post(",".join(wide) + "\nm-1" + ",x" * 999 + "\n"), 422)
    assert body["errors"] == [{"path": "header[999]", "message": "column 'attributes.k5' repeats header[6]"}]
    # An attribute name longer than a stored attribute's key may be.
    body = problem(await post(f"externalId,attributes.{'k' * 201}\nm-1,x\n"), 422, "header[1]")
    assert body["errors"][0]["message"] == "an attribute name may have at most 200 characters"
    # Rows x columns is bounded too: 5,001 rows of 1,000 columns is over 5,000,000 cells.
    full = ",".join(["externalId", *(f"attributes.k{i}" for i in range(999))])
    rows = "\n".join(f"m-{i}" + "," * 999 for i in range(5_001))
    body = problem(await post(full + "\n" + rows + "\n"), 422, "rows")
    assert body["detail"] == "more than 5000 rows of 1000 columns (at most 5000000 cells per import)"
    assert await count(stack.engine, "customers", stack.tenant) == 0
    # Exactly 1,000 columns is a valid import.
    r = await post(full + "\nm-1,gold" + "," * 998 + "\n")
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 1, "updated": 0, "total": 1, "rejected": 0, "errors": []}


# ---- class 3: a DYNAMIC filter with 60,000 values; database time limits ---------------------------


async def test_long_in_list_is_refused_and_others_keep_their_latency(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    values = [f"v{i}" for i in range(60_000)]
    body = {
        "tenantId": stack.tenant,
        "name": "Everyone listed",
        "type": "DYNAMIC",
        "filter": {"field": "attributes.tier", "op": "in", "value": values},
    }
    content = json.dumps(body).encode()  # 0.7 MB: under the 1 MiB body limit
    headers = stack.headers() | {"Content-Type": "application/json"}
    async with api_process(stack) as base_url:

        async def attack() -> None:
            async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
                r = await client.post("/segments", content=content, headers=headers)
            assert problem(r, 422, "$.filter.value")["detail"] == (
                "a filter may list at most 1000 values in all its in/nin lists"
            )

        await unaffected(base_url, attack)
    assert await count(stack.engine, "segments", stack.tenant) == 0


async def test_filter_lists_are_bounded_in_all_and_still_match(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    audience = await make_audience(stack.engine, stack.tenant, 6)  # tiers: silver, gold, silver, ...

    async def create(filter_: dict[str, Any]) -> httpx.Response:
        body = {"tenantId": stack.tenant, "name": "s", "type": "DYNAMIC", "filter": filter_}
        return await stack.call("POST", "/segments", json=body)

    listed = ["gold", *(f"other{i}" for i in range(999))]
    r = await create({"field": "attributes.tier", "op": "in", "value": listed})
    assert r.status_code == 201, r.text
    assert r.json()["size"] == 3
    r = await create({"field": "attributes.tier", "op": "nin", "value": listed})
    assert r.json()["size"] == 3
    emails = [c["email"] for c in audience.customers[:2]]
    r = await create(
        {"field": "email", "op": "in", "value": emails + [f"x{i}@example.com" for i in range(998)]}
    )
    assert r.json()["size"] == 2
    # 1,001 values in one list, or over several lists: 422 at the list that goes over.
    problem(await create({"field": "email", "op": "in", "value": [*emails, *listed]}), 422, "$.filter.value")
    split = {
        "any": [
            {"field": "email", "op": "in", "value": listed},
            {"field": "email", "op": "nin", "value": ["a"]},
        ]
    }
    problem(await create(split), 422, "$.filter.any[1].value")
    # `exists` takes a boolean only (a nested document there would be stored and shown again).
    problem(await create({"field": "email", "op": "exists", "value": deep(300)}), 422, "$.filter.value")
    problem(
        await create({"field": "createdAt", "op": "gt", "value": "9999-12-31T23:59:59-05:00"}),
        422,
        "$.filter.value",
    )
    async with stack.engine.connect() as conn:
        stored = (
            await conn.execute(select(func.count()).where(Segment.tenant_id == stack.tenant))
        ).scalar_one()
    assert stored == 4  # the audience's STATIC segment and the three valid ones


async def test_database_time_limits_are_set_on_every_connection(database_url: str) -> None:
    engine = db_engine.make_engine(
        database_url, timeouts=db_engine.DbTimeouts(statement_ms=1234, lock_ms=567)
    )
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW statement_timeout"))).scalar_one() == "1234ms"
            assert (await conn.execute(text("SHOW lock_timeout"))).scalar_one() == "567ms"
    finally:
        await engine.dispose()


async def test_a_statement_over_the_time_limit_is_a_503_with_retry_after(make_stack: StackFactory) -> None:
    """A real API process with `CAMPAIGNS_DB_STATEMENT_TIMEOUT_MS`: an upsert that waits on a row
    another transaction holds is cut at the limit and answered 503 + Retry-After; once the row is
    free, the same request succeeds."""
    stack = await make_stack(worker=False)
    body = {"tenantId": stack.tenant, "externalId": "locked-1", "firstName": "Ada"}
    assert (await stack.call("POST", "/customers", json=body)).status_code == 201
    async with (
        api_process(
            stack, CAMPAIGNS_DB_STATEMENT_TIMEOUT_MS="300", CAMPAIGNS_DB_LOCK_TIMEOUT_MS="0"
        ) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10, headers=stack.headers()) as client,
    ):
        async with stack.engine.connect() as holder:
            transaction = await holder.begin()
            await holder.execute(
                text("SELECT 1 FROM customers WHERE tenant_id = :t AND external_id = 'locked-1' FOR UPDATE"),
                {"t": stack.tenant},
            )
            started = asyncio.get_running_loop().time()
            r = await client.post("/customers", json={**body, "firstName": "Grace"})
            waited = asyncio.get_running_loop().time() - started
            await transaction.rollback()
        body_503 = problem(r, 503)
        assert body_503["detail"] == "the database is busy; try again shortly"
        assert r.headers["retry-after"] == "2"
        assert waited < 3, waited
        r = await client.post("/customers", json={**body, "firstName": "Grace"})
        assert r.status_code == 200 and r.json()["firstName"] == "Grace", r.text


async def test_a_lock_wait_over_the_limit_is_a_503(make_stack: StackFactory, database_url: str) -> None:
    """The lock limit on its own (statement limit off): the in-process app on an engine of its own."""
    stack = await make_stack(worker=False)
    body = {"tenantId": stack.tenant, "externalId": "locked-2"}
    assert (await stack.call("POST", "/customers", json=body)).status_code == 201
    engine = db_engine.make_engine(database_url, timeouts=db_engine.DbTimeouts(statement_ms=0, lock_ms=200))
    app = create_app(stack.settings, AppState(settings=stack.settings, engine=engine, control=None))
    try:
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=stack.headers()
            ) as client,
            stack.engine.connect() as holder,
        ):
            transaction = await holder.begin()
            await holder.execute(
                text("SELECT 1 FROM customers WHERE tenant_id = :t AND external_id = 'locked-2' FOR UPDATE"),
                {"t": stack.tenant},
            )
            r = await client.post("/customers", json={**body, "lastName": "Hopper"})
            await transaction.rollback()
        assert problem(r, 503)["detail"] == "the database is busy; try again shortly"
        assert r.headers["retry-after"] == "2"
    finally:
        await engine.dispose()
    async with stack.engine.connect() as conn:
        last = (
            await conn.execute(select(Customer.last_name).where(Customer.tenant_id == stack.tenant))
        ).scalar_one()
    assert last is None


# ---- class 7: attributes nested hundreds of levels deep -----------------------------------------


async def test_deep_attributes_are_refused_at_every_door(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    t = stack.tenant
    r = await stack.call(
        "POST", "/customers", json={"tenantId": t, "externalId": "d-1", "attributes": deep(300)}
    )
    body = problem(r, 422, "$.attributes")
    assert (
        body["errors"][0]["message"] == "Value error, attributes.a.a.a.a.a.a.a.a nests deeper than 8 levels"
    )
    # Nine levels is one too many; eight is fine.
    problem(
        await stack.call(
            "POST", "/customers", json={"tenantId": t, "externalId": "d-1", "attributes": deep(9)}
        ),
        422,
    )
    r = await stack.call(
        "POST", "/customers", json={"tenantId": t, "externalId": "d-1", "attributes": deep(7)}
    )
    assert r.status_code == 201 and r.json()["attributes"] == deep(7)
    # Updating the same customer with deep attributes changes nothing.
    r = await stack.call(
        "POST", "/customers", json={"tenantId": t, "externalId": "d-1", "attributes": deep(50)}
    )
    problem(r, 422, "$.attributes")
    # Too many values, a key too long.
    many = {f"k{i}": i for i in range(1000)}
    body = problem(
        await stack.call("POST", "/customers", json={"tenantId": t, "externalId": "d-2", "attributes": many}),
        422,
    )
    assert body["errors"][0]["message"] == "Value error, attributes has more than 1000 values in all"
    long_key = {"k" * 201: 1}
    body = problem(
        await stack.call(
            "POST", "/customers", json={"tenantId": t, "externalId": "d-2", "attributes": long_key}
        ),
        422,
    )
    assert body["errors"][0]["message"].endswith("has a key longer than 200 characters")
    # The JSON import rejects the row and writes the others.
    rows = [
        {"externalId": "d-3", "attributes": deep(40)},
        {"externalId": "d-4", "attributes": {"tier": "gold"}},
    ]
    r = await stack.call("POST", "/customers/import", json={"tenantId": t, "customers": rows})
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == 1 and [e["path"] for e in r.json()["errors"]] == [
        "$.customers[0].attributes"
    ]
    async with stack.engine.connect() as conn:
        stored: dict[str, Any] = dict(
            (
                await conn.execute(
                    select(Customer.external_id, Customer.attributes).where(Customer.tenant_id == t)
                )
            ).all()
        )
    assert stored == {"d-1": deep(7), "d-4": {"tier": "gold"}}


async def test_rows_stored_deep_before_the_bound_still_list(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    customer_id = new_id("customer")
    async with stack.engine.begin() as conn:
        await conn.execute(
            insert(Customer).values(
                id=customer_id, tenant_id=stack.tenant, external_id="old-deep", attributes=deep(300)
            )
        )
        segment_id = new_id("segment")
        await conn.execute(
            insert(Segment).values(
                id=segment_id,
                tenant_id=stack.tenant,
                name="old",
                type="DYNAMIC",
                filter={"field": "externalId", "op": "exists", "value": deep(300)},
            )
        )
    shown = deep(7)
    cut: Any = shown
    for _ in range(6):
        cut = cut["a"]
    cut["a"] = {"a": None}  # the eighth level is kept, what lies deeper is shown as null
    r = await stack.call("GET", "/customers", params={"tenantId": stack.tenant})
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["attributes"] == shown
    r = await stack.call("GET", f"/customers/{customer_id}")
    assert r.status_code == 200 and r.json()["attributes"] == shown
    r = await stack.call("GET", "/segments", params={"tenantId": stack.tenant})
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["filter"]["field"] == "externalId"


# ---- class 8: extreme instants, NaN/Infinity, surrogates, NUL -------------------------------------

EXTREME_INSTANTS = [
    "0001-01-01T00:00:00+05:00",  # overflows when converted to UTC
    "9999-12-31T23:59:59-05:00",  # likewise, the other way
    "9999-12-31T23:59:59",  # no offset: beyond the supported years
    "1900-01-01T00:00:00Z",
]
# Raw JSON fragments Python's json module reads as NaN, Infinity and a lone surrogate.
HOSTILE_JSON = ["NaN", "1e999", "-Infinity", '"\\ud800"', '"a\\u0000b"']


async def test_events_refuse_every_unstorable_value_and_write_nothing(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    event = {
        "id": "evt-1",
        "type": "booking.created",
        "tenantId": stack.tenant,
        "customerId": "customer_1",
        "occurredAt": "2030-01-01T00:00:00Z",
    }
    for instant in EXTREME_INSTANTS:
        body = problem(
            await stack.call("POST", "/events", json={**event, "occurredAt": instant}), 422, "$.occurredAt"
        )
        assert body["errors"][0]["message"] == "Value error, must be between 1970-01-01 and 9000-12-31 (UTC)"
    for fragment in HOSTILE_JSON:
        raw = json.dumps(event)[:-1] + f', "data": {{"n": [1, {{"x": {fragment}}}]}}}}'
        body = problem(await raw_post(stack, "/events", raw), 422, "$.data")
        assert body["errors"][0]["message"].startswith("Value error, n[1].x: must ")
    for field in ("id", "type", "customerId", "clubId"):
        for fragment in ('"\\ud800"', '"\\u0000"'):
            raw = json.dumps({**event, field: "PLACE"}).replace('"PLACE"', fragment)
            problem(await raw_post(stack, "/events", raw), 422, f"$.{field}")
    problem(await stack.call("POST", "/events", json={**event, "data": deep(9)}), 422, "$.data")
    assert await count(stack.engine, "customer_events", stack.tenant) == 0


async def test_an_event_batch_records_the_valid_events_and_reports_the_others(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(worker=False)
    event = {
        "type": "booking.created",
        "tenantId": stack.tenant,
        "customerId": "customer_1",
        "occurredAt": "2030-01-01T00:00:00Z",
    }
    events = [
        {**event, "id": "b-0"},
        {**event, "id": "b-1", "occurredAt": "0001-01-01T00:00:00+05:00"},
        {**event, "id": "b-2"},
        {**event, "id": "b-3", "data": {"x": "PLACE"}},
    ]
    raw = json.dumps({"events": events}).replace('"PLACE"', "NaN")
    r = await raw_post(stack, "/events/batch", raw)
    assert r.status_code == 202, r.text
    assert r.json() == {
        "accepted": 2,
        "duplicates": 0,
        "triggered": 0,
        "skippedPaused": 0,
        "conversionsRecorded": 0,
        "rejected": [
            {
                "index": 1,
                "path": "$.events[1].occurredAt",
                "message": "Value error, must be between 1970-01-01 and 9000-12-31 (UTC)",
            },
            {
                "index": 3,
                "path": "$.events[3].data",
                "message": "Value error, x: must be a finite number (not NaN or Infinity)",
            },
        ],
    }
    async with stack.engine.connect() as conn:
        ids = (
            (
                await conn.execute(
                    text("SELECT id FROM customer_events WHERE tenant_id = :t ORDER BY id"),
                    {"t": stack.tenant},
                )
            )
            .scalars()
            .all()
        )
    assert ids == ["b-0", "b-2"]
    # A batch without one valid event is a 422 and records nothing.
    r = await stack.call("POST", "/events/batch", json={"events": [events[1], {**event, "id": "\u0000"}]})
    body = problem(r, 422)
    assert [e["path"] for e in body["errors"]] == ["$.events[0].occurredAt", "$.events[1].id"]
    assert await count(stack.engine, "customer_events", stack.tenant) == 2


async def test_a_webhook_batch_records_the_good_events_and_reports_the_bad_one(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(worker=False)
    sent = datetime.now(UTC) - timedelta(hours=1)
    ledger = await build_ledger(stack, targets=3, email_sent=3, sms_sent=0, sent_at=lambda i: sent)
    c = ledger.campaign_id
    events = [
        {"id": f"{c}-g1", "type": "DELIVERED", "deliveryId": ledger.email_delivery[0]},
        {
            "id": f"{c}-bad",
            "type": "DELIVERED",
            "deliveryId": ledger.email_delivery[1],
            "occurredAt": "9999-12-31T23:59:59-05:00",
        },
        {"id": f"{c}-g2", "type": "BOUNCED", "deliveryId": ledger.email_delivery[2], "reason": "5.1.1"},
        {"id": f"{c}-nul", "type": "DELIVERED", "deliveryId": "delivery_\u0000"},
    ]
    r = await signed_post(stack, "/webhooks/email", {"events": events})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "received": 4,
        "recorded": 2,
        "duplicates": 0,
        "ignored": 0,
        "rejected": [
            {
                "index": 1,
                "path": "$.events[1].occurredAt",
                "message": "Value error, must be between 1970-01-01 and 9000-12-31 (UTC)",
            },
            {
                "index": 3,
                "path": "$.events[3].deliveryId",
                "message": "Value error, must not contain the NUL character (\\u0000)",
            },
        ],
    }
    async with stack.engine.connect() as conn:
        recorded = (
            (
                await conn.execute(
                    text(
                        "SELECT event_key FROM interactions"
                        " WHERE campaign_id = :c AND event_key LIKE 'webhook:%' ORDER BY 1"
                    ),
                    {"c": c},
                )
            )
            .scalars()
            .all()
        )
    assert recorded == [f"webhook:email:{c}-g1", f"webhook:email:{c}-g2"]
    # The provider resends the batch: the good ones are duplicates, the bad ones still reported.
    r = await signed_post(stack, "/webhooks/email", {"events": events})
    assert (r.json()["recorded"], r.json()["duplicates"], len(r.json()["rejected"])) == (0, 2, 2)
    # The SMS hook the same way.
    sms = [
        {"id": f"{c}-s1", "type": "FAILED", "deliveryId": "x", "errorCode": "\ud800"},
        {"id": f"{c}-s2", "type": "DELIVERED", "deliveryId": "nobody"},
    ]
    r = await signed_post(stack, "/webhooks/sms", {"events": sms})
    assert r.status_code == 200, r.text
    assert r.json()["ignored"] == 1 and [p["path"] for p in r.json()["rejected"]] == ["$.events[0].errorCode"]


async def test_campaign_instants_and_trigger_conditions_are_bounded(make_stack: StackFactory) -> None:
    stack = await make_stack()
    audience = await make_audience(stack.engine, stack.tenant, 2)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    base = {
        "tenantId": stack.tenant,
        "name": "n",
        "segmentId": audience.segment_id,
        "channels": ["EMAIL"],
        "emailTemplateId": email_t,
    }
    for instant in EXTREME_INSTANTS:
        problem(
            await stack.call("POST", "/campaigns", json={**base, "scheduledAt": instant}),
            422,
            "$.scheduledAt",
        )
        schedule = {"frequency": "daily", "time": "09:00", "startAt": instant}
        r = await stack.call("POST", "/campaigns", json={**base, "type": "RECURRING", "schedule": schedule})
        problem(r, 422, "$.schedule.startAt")
        schedule = {"frequency": "daily", "time": "09:00", "endAt": instant}
        r = await stack.call("POST", "/campaigns", json={**base, "type": "RECURRING", "schedule": schedule})
        problem(r, 422, "$.schedule.endAt")
    for fragment in HOSTILE_JSON:
        raw = json.dumps(
            {
                **base,
                "type": "TRIGGERED",
                "triggerEvent": "booking.created",
                "triggerConditions": {"k": "PLACE"},
            }
        )
        r = await raw_post(stack, "/campaigns", raw.replace('"PLACE"', fragment))
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, (fragment, r.text)
        assert all(e["path"].startswith("$.triggerConditions.k") for e in r.json()["errors"]), r.text
    raw = json.dumps({**base, "type": "TRIGGERED", "triggerEvent": "x", "triggerConditions": {"PLACE": 1}})
    problem(await raw_post(stack, "/campaigns", raw.replace('"PLACE"', '"\\udfff"')), 422)
    assert await count(stack.engine, "campaigns", stack.tenant) == 0
    # Scheduling an existing campaign.
    campaign_id = await create_campaign(stack, audience, email_t, None)
    for instant in EXTREME_INSTANTS:
        r = await stack.call("POST", f"/campaigns/{campaign_id}/schedule", json={"scheduledAt": instant})
        problem(r, 422, "$.scheduledAt")
    async with stack.engine.connect() as conn:
        row = (
            await conn.execute(
                select(Campaign.status, Campaign.scheduled_at).where(Campaign.id == campaign_id)
            )
        ).one()
    assert (row.status, row.scheduled_at) == ("DRAFT", None)


def _query_params(route: APIRoute) -> list[str]:
    found: list[str] = []
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        found += [p.alias for p in dependant.query_params]
        stack.extend(dependant.dependencies)
    return found


async def test_a_nul_in_any_query_parameter_of_any_route_is_a_422(make_stack: StackFactory) -> None:
    """Every query parameter of every route, discovered from the app (a new one is covered too)."""
    stack = await make_stack(worker=False)
    app = stack.api._transport.app  # type: ignore[attr-defined]
    checked = 0
    for route in api_routes(app):
        names = _query_params(route)
        path = route.path.replace("{", "").replace("}", "")  # any id: the check comes first
        for method in sorted(route.methods or ()):
            for name in names:
                r = await stack.call(method, path, params={"tenantId": stack.tenant, name: "a\x00b"})
                body = problem(r, 422, f"query.{name}")
                assert body["detail"] == "must not contain the NUL character (\\u0000)"
                checked += 1
    assert checked >= 20, checked
    assert await count(stack.engine, "customers", stack.tenant) == 0
