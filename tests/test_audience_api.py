"""Customers, segments and templates through the API and the database.

README "API at a glance" and "Security" state the rules."""

import json
import os
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select, update

from api.deps import AppState
from api.main import create_app
from db.models import Customer, Segment, SegmentMember, Template
from tests.conftest import Stack, StackFactory

# ---- helpers ----------------------------------------------------------------------------------------


async def count(stack: Stack, model: Any, tenant: str | None = None) -> int:
    async with stack.engine.connect() as conn:
        query = select(func.count()).select_from(model).where(model.tenant_id == (tenant or stack.tenant))
        return int((await conn.execute(query)).scalar_one())


async def customer_row(stack: Stack, external_id: str, tenant: str | None = None) -> Any:
    async with stack.engine.connect() as conn:
        query = select(Customer.__table__).where(
            Customer.tenant_id == (tenant or stack.tenant), Customer.external_id == external_id
        )
        return (await conn.execute(query)).mappings().one_or_none()


async def post_csv(
    stack: Stack, body: str, tenant: str | None = None, query_tenant: str | None = None
) -> httpx.Response:
    headers = stack.headers(tenant) | {"Content-Type": "text/csv"}
    params = {"tenantId": query_tenant or tenant or stack.tenant}
    return await stack.api.post("/customers/import", content=body.encode(), headers=headers, params=params)


async def import_json(stack: Stack, customers: list[dict[str, Any]], tenant: str | None = None) -> Any:
    r = await stack.call(
        "POST", "/customers/import", tenant, json={"tenantId": tenant or stack.tenant, "customers": customers}
    )
    assert r.status_code == 200, r.text
    return r.json()


def written(created: int, updated: int) -> dict[str, Any]:
    """The report of an import whose every row was valid."""
    return {"created": created, "updated": updated, "total": created + updated, "rejected": 0, "errors": []}


def error_paths(report: dict[str, Any]) -> list[str]:
    return [e["path"] for e in report["errors"]]


async def customer_ids(stack: Stack, tenant: str | None = None) -> dict[str, str]:
    """externalId -> id of every customer of the tenant."""
    async with stack.engine.connect() as conn:
        query = select(Customer.external_id, Customer.id).where(
            Customer.tenant_id == (tenant or stack.tenant)
        )
        return {e: i for e, i in (await conn.execute(query)).all()}


def assert_problem(r: httpx.Response, status: int, *paths: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    for path in paths:
        assert path in [e["path"] for e in body.get("errors", [])], body
    return body


# ---- customers --------------------------------------------------------------------------------------


async def test_customer_upsert_creates_then_updates_only_sent_fields(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    body = {
        "tenantId": stack.tenant,
        "externalId": "m-1",
        "email": "ann@example.com",
        "phone": "+27821234567",
        "firstName": "Ann",
        "lastName": "Lee",
        "clubId": "club_1",
        "attributes": {"tier": "gold", "handicap": 12},
    }
    r = await stack.call("POST", "/customers", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"].startswith("customer_")
    assert created["tenantId"] == stack.tenant and created["externalId"] == "m-1"
    assert created["emailOptIn"] is True and created["smsOptIn"] is True
    assert created["emailUnsubscribed"] is False and created["emailBounced"] is False
    assert created["attributes"] == {"tier": "gold", "handicap": 12}
    assert created["createdAt"].endswith("Z") and created["updatedAt"].endswith("Z")

    # Same externalId: an update of the same customer; fields not sent keep their values.
    update_body = {"tenantId": stack.tenant, "externalId": "m-1", "firstName": "Anne", "smsOptIn": False}
    r = await stack.call("POST", "/customers", json=update_body)
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["id"] == created["id"]
    assert updated["firstName"] == "Anne" and updated["smsOptIn"] is False
    assert updated["email"] == "ann@example.com" and updated["phone"] == "+27821234567"
    assert updated["attributes"] == {"tier": "gold", "handicap": 12}
    assert await count(stack, Customer) == 1

    row = await customer_row(stack, "m-1")
    assert row["first_name"] == "Anne" and row["sms_opt_in"] is False and row["email_opt_in"] is True
    assert updated["updatedAt"] > created["updatedAt"] and updated["createdAt"] == created["createdAt"]

    # Sending the same values again matches the customer (200) but changes nothing, updatedAt included.
    r = await stack.call("POST", "/customers", json=update_body)
    assert r.status_code == 200 and r.json()["updatedAt"] == updated["updatedAt"]

    # Sending null clears a field; sending attributes replaces the whole object.
    r = await stack.call(
        "POST", "/customers", json={**update_body, "phone": None, "attributes": {"tier": "silver"}}
    )
    assert r.status_code == 200
    assert r.json()["phone"] is None and r.json()["attributes"] == {"tier": "silver"}

    # Suppressions show as booleans.
    async with stack.engine.begin() as conn:
        await conn.execute(
            update(Customer).where(Customer.id == created["id"]).values(email_unsubscribed_at=func.now())
        )
    r = await stack.call("GET", f"/customers/{created['id']}")
    assert r.status_code == 200
    assert r.json()["emailUnsubscribed"] is True and r.json()["smsUnsubscribed"] is False


async def test_customer_validation_errors_change_nothing(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    good = {"tenantId": stack.tenant, "externalId": "v-1", "email": "a@example.com"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "phone": "0821234567"}, "$.phone"),
        ({**good, "phone": "+0821234567"}, "$.phone"),
        ({**good, "email": "not-an-email"}, "$.email"),
        ({**good, "email": "a b@example.com"}, "$.email"),
        ({**good, "emial": "typo@example.com"}, "$.emial"),
        ({**good, "attributes": ["not", "an", "object"]}, "$.attributes"),
        ({**good, "attributes": {"blob": "x" * (64 * 1024)}}, "$.attributes"),
        ({**good, "emailOptIn": "perhaps"}, "$.emailOptIn"),
        ({"tenantId": stack.tenant, "email": "a@example.com"}, "$.externalId"),
        ({**good, "externalId": ""}, "$.externalId"),
    ]
    for body, path in cases:
        assert_problem(await stack.call("POST", "/customers", json=body), 422, path)
    r = await stack.api.post(
        "/customers",
        content=b'{"tenantId": "x", ',
        headers=stack.headers() | {"Content-Type": "application/json"},
    )
    assert_problem(r, 400)
    assert await count(stack, Customer) == 0
    # Over 1 MiB is a 413 here (the import endpoint alone takes up to 64 MiB).
    huge = {**good, "attributes": {f"k{i}": "x" * 1000 for i in range(1100)}}
    assert_problem(await stack.call("POST", "/customers", json=huge), 413)
    assert await count(stack, Customer) == 0


async def test_get_and_list_customers(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    await import_json(
        stack,
        [{"externalId": f"l-{i}", "email": f"p{i}@example.com", "clubId": f"club_{i % 2}"} for i in range(7)],
    )
    r = await stack.call("GET", "/customers", params={"tenantId": stack.tenant, "take": 3, "skip": 0})
    assert r.status_code == 200
    page = r.json()
    assert page["meta"] == {"total": 7, "skip": 0, "take": 3} and len(page["data"]) == 3
    r = await stack.call("GET", "/customers", params={"tenantId": stack.tenant, "take": 3, "skip": 6})
    assert len(r.json()["data"]) == 1
    r = await stack.call("GET", "/customers", params={"tenantId": stack.tenant, "email": "p4@example.com"})
    found = r.json()
    assert found["meta"]["total"] == 1 and found["data"][0]["externalId"] == "l-4"
    r = await stack.call("GET", "/customers", params={"tenantId": stack.tenant, "clubId": "club_1"})
    assert r.json()["meta"]["total"] == 3
    r = await stack.call("GET", f"/customers/{found['data'][0]['id']}")
    assert r.status_code == 200 and r.json()["email"] == "p4@example.com"
    assert_problem(await stack.call("GET", "/customers/customer_doesnotexist"), 404)
    assert_problem(await stack.call("GET", "/customers", params={"tenantId": stack.tenant, "take": 0}), 422)
    assert_problem(await stack.call("GET", "/customers"), 422, "query.tenantId")


# ---- import -----------------------------------------------------------------------------------------


async def test_import_json_upserts_in_chunks(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    rows = [{"externalId": f"j-{i:05d}", "email": f"j{i}@example.com"} for i in range(12_000)]
    assert await import_json(stack, rows) == written(12_000, 0)
    assert await count(stack, Customer) == 12_000

    again: list[dict[str, Any]] = [
        {"externalId": "j-00001", "firstName": "Updated", "attributes": {"tier": "gold"}},
        {"externalId": "j-00002", "smsOptIn": False},
        {"externalId": "new-1", "phone": "+15551234567"},
    ]
    assert await import_json(stack, again) == written(1, 2)
    first = await customer_row(stack, "j-00001")
    assert first["first_name"] == "Updated" and first["email"] == "j1@example.com"
    assert first["attributes"] == {"tier": "gold"}
    second = await customer_row(stack, "j-00002")
    assert second["sms_opt_in"] is False and second["email"] == "j2@example.com"
    assert (await customer_row(stack, "new-1"))["phone"] == "+15551234567"
    assert await count(stack, Customer) == 12_001


async def test_import_with_mixed_rows_writes_the_valid_ones_and_reports_the_rest(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(worker=False)
    await import_json(stack, [{"externalId": "x-3", "firstName": "Before", "emailOptIn": True}])
    rows: list[dict[str, Any]] = [{"externalId": f"x-{i}", "phone": "+27821234567"} for i in range(20)]
    rows[3] = {"externalId": "x-3", "firstName": "After", "emailOptIn": "perhaps"}  # invalid update
    rows[5]["email"] = "not-an-email"
    rows[7]["phone"] = "+999123456789"  # E.164 in form, but no country has the code 999
    rows[9]["phone"] = "+1555123"  # too short for North America (+1 takes ten digits)
    rows[12]["phone"] = "12345"
    rows[15]["bogus"] = 1
    rows[16] = "not an object"  # type: ignore[call-overload]
    rows[17] = {"externalId": "x-1", "firstName": "Twin"}  # repeats row 2's externalId
    rows[18] = {"email": "no-id@example.com"}
    r = await stack.call("POST", "/customers/import", json={"tenantId": stack.tenant, "customers": rows})
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["created"], report["updated"], report["total"], report["rejected"]) == (11, 0, 11, 9)
    assert error_paths(report) == [
        "$.customers[3].emailOptIn",
        "$.customers[5].email",
        "$.customers[7].phone",
        "$.customers[9].phone",
        "$.customers[12].phone",
        "$.customers[15].bogus",
        "$.customers[16]",
        "$.customers[17].externalId",
        "$.customers[18].externalId",
    ]
    by_path = {e["path"]: e for e in report["errors"]}
    assert by_path["$.customers[3].emailOptIn"]["row"] == 4
    assert by_path["$.customers[3].emailOptIn"]["externalId"] == "x-3"
    assert by_path["$.customers[16]"]["externalId"] is None
    assert "country calling code" in by_path["$.customers[7].phone"]["message"]
    assert "too short" in by_path["$.customers[9].phone"]["message"]
    assert "$.customers[1]" in by_path["$.customers[17].externalId"]["message"]
    # The valid rows landed; a rejected row changed nothing, not even the customer it names.
    assert await count(stack, Customer) == 12
    assert (await customer_row(stack, "x-3"))["first_name"] == "Before"
    assert (await customer_row(stack, "x-1"))["first_name"] is None
    for bad in ("x-5", "x-7", "x-9", "x-12", "x-15"):
        assert await customer_row(stack, bad) is None

    # Every row bad: still a report, nothing written.
    r = await stack.call(
        "POST", "/customers/import", json={"tenantId": stack.tenant, "customers": [{"externalId": ""}]}
    )
    assert r.status_code == 200 and r.json()["rejected"] == 1 and r.json()["total"] == 0
    # At most 1,000 errors are listed; `rejected` counts them all.
    many = [{"externalId": f"m-{i}", "phone": "0821"} for i in range(1500)]
    report = await import_json(stack, many)
    assert report["rejected"] == 1500 and len(report["errors"]) == 1000
    assert await count(stack, Customer) == 12

    # What makes the request itself unreadable still writes nothing.
    too_many = {"tenantId": stack.tenant, "customers": [{"externalId": str(i)} for i in range(100_001)]}
    assert_problem(await stack.call("POST", "/customers/import", json=too_many), 422, "$.customers")
    assert_problem(await stack.call("POST", "/customers/import", json={"customers": []}), 422, "$.tenantId")
    assert_problem(
        await stack.call("POST", "/customers/import", json={"tenantId": stack.tenant, "customers": {}}),
        422,
        "$.customers",
    )
    assert await count(stack, Customer) == 12

    r = await stack.api.post(
        "/customers/import",
        content=b'{"tenantId": "x", "customers": [',
        headers=stack.headers() | {"Content-Type": "application/json"},
    )
    assert_problem(r, 400)
    r = await stack.api.post(
        "/customers/import", content=b"<xml/>", headers=stack.headers() | {"Content-Type": "application/xml"}
    )
    assert_problem(r, 415)


async def test_an_import_that_fails_to_write_writes_nothing(make_stack: StackFactory) -> None:
    """All valid rows go in one transaction: a failure part-way (here: the second chunk of
    5,000 rows) leaves none of them behind."""
    stack = await make_stack(worker=False)
    rows = [{"externalId": f"t-{i:05d}", "firstName": "F"} for i in range(6000)]
    # A trigger that fails on one row of the second chunk, for this tenant only.
    fail = f"""
        CREATE FUNCTION fail_{stack.tenant}() RETURNS trigger AS $$
        BEGIN
            IF NEW.tenant_id = '{stack.tenant}' AND NEW.external_id = 't-05500' THEN
                RAISE EXCEPTION 'disk on fire';
            END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql;
        CREATE TRIGGER fail_{stack.tenant} BEFORE INSERT ON customers
            FOR EACH ROW EXECUTE FUNCTION fail_{stack.tenant}();
    """
    async with stack.engine.begin() as conn:
        await conn.exec_driver_sql(fail)
    app = create_app(stack.settings, AppState(settings=stack.settings, engine=stack.engine, control=None))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
            body = {"tenantId": stack.tenant, "customers": rows}
            r = await api.post("/customers/import", json=body, headers=stack.headers())
        assert_problem(r, 500)
        assert "disk on fire" not in r.text
    finally:
        async with stack.engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP TRIGGER fail_{stack.tenant} ON customers")
            await conn.exec_driver_sql(f"DROP FUNCTION fail_{stack.tenant}()")
    assert await count(stack, Customer) == 0
    assert await import_json(stack, rows) == written(6000, 0)


async def test_import_csv(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    csv_body = (
        "externalId,email,phone,firstName,lastName,clubId,emailOptIn,smsOptIn,attributes.tier,attributes.level\n"
        "c-1,c1@example.com,+27821234567,Cara,Ng,club_1,true,false,gold,3\n"
        'c-2,c2@example.com,,"Dee, Jr.",,club_2,,,silver,\n'
        "\n"
        "c-3,,,,,,false,true,,\n"
    )
    r = await post_csv(stack, csv_body)
    assert r.status_code == 200, r.text
    assert r.json() == written(3, 0)
    c1 = await customer_row(stack, "c-1")
    assert c1["attributes"] == {"tier": "gold", "level": "3"} and c1["sms_opt_in"] is False
    assert c1["phone"] == "+27821234567" and c1["club_id"] == "club_1"
    c2 = await customer_row(stack, "c-2")
    assert c2["first_name"] == "Dee, Jr." and c2["phone"] is None and c2["email_opt_in"] is True
    assert c2["attributes"] == {"tier": "silver"}
    c3 = await customer_row(stack, "c-3")
    assert c3["email"] is None and c3["email_opt_in"] is False and c3["attributes"] == {}

    # A header without an opt-in column leaves the stored opt-in alone.
    r = await post_csv(stack, "externalId,firstName\nc-1,Carla\nc-4,Dan\n")
    assert r.json() == written(1, 1)
    c1 = await customer_row(stack, "c-1")
    assert c1["first_name"] == "Carla" and c1["sms_opt_in"] is False and c1["attributes"]["tier"] == "gold"

    # Bad rows are reported by record number (blank lines not counted); the others land.
    lines = ["externalId,phone,emailOptIn"] + [f"ok-{i},+27821234567,true" for i in range(20)]
    lines[13] = "bad-12,0821234567,true"
    lines[14] = "bad-13,+27821234567,maybe"
    lines[15] = "bad-14,+27821234567,true,extra"
    lines[16] = ""
    lines[17] = "ok-1,+27821234567,false"  # repeats record 2
    r = await post_csv(stack, "\n".join(lines) + "\n")
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["created"], report["rejected"]) == (15, 4)
    assert [(e["row"], e["path"], e["externalId"]) for e in report["errors"]] == [
        (13, "row 13.phone", "bad-12"),
        (14, "row 14.emailOptIn", "bad-13"),
        (15, "row 15", None),
        (16, "row 16.externalId", "ok-1"),
    ]
    assert await count(stack, Customer) == 4 + 15
    assert (await customer_row(stack, "ok-1"))["email_opt_in"] is True  # the repeat was not applied

    assert_problem(await post_csv(stack, "externalId,nickname\nz-1,Zed\n"), 422, "header[1]")
    assert_problem(await post_csv(stack, "email\nz@example.com\n"), 422, "header")
    big = "externalId\n" + "".join(f"{i}\n" for i in range(100_001))
    assert_problem(await post_csv(stack, big), 422, "rows")
    r = await stack.api.post(
        "/customers/import",
        content=b"externalId\nz-1\n",
        headers=stack.headers() | {"Content-Type": "text/csv"},
    )
    assert_problem(r, 422, "query.tenantId")
    r = await stack.api.post(
        "/customers/import",
        content=b"externalId\n\xff\xfe\n",
        headers=stack.headers() | {"Content-Type": "text/csv"},
        params={"tenantId": stack.tenant},
    )
    assert_problem(r, 400)
    assert await count(stack, Customer) == 4 + 15


# ---- segments ---------------------------------------------------------------------------------------


async def test_static_segment_size_members_and_errors(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    await import_json(stack, [{"externalId": f"s-{i}"} for i in range(5)])
    ids = await customer_ids(stack)
    await import_json(stack, [{"externalId": "foreign"}], tenant=stack.other_tenant)
    foreign = (await customer_ids(stack, stack.other_tenant))["foreign"]

    body = {
        "tenantId": stack.tenant,
        "clubId": "club_1",
        "name": "Active golfers",
        "type": "STATIC",
        "customerIds": [ids["s-0"], ids["s-1"], ids["s-0"], ids["s-2"]],
    }
    r = await stack.call("POST", "/segments", json=body)
    assert r.status_code == 201, r.text
    segment = r.json()
    assert segment["id"].startswith("segment_") and segment["size"] == 3 and segment["type"] == "STATIC"
    assert segment["createdAt"].endswith("Z") and segment["clubId"] == "club_1"

    r = await stack.call(
        "POST", f"/segments/{segment['id']}/members", json={"customerIds": [ids["s-2"], ids["s-3"]]}
    )
    assert r.status_code == 200 and r.json()["size"] == 4
    r = await stack.call("GET", f"/segments/{segment['id']}")
    assert r.status_code == 200 and r.json()["size"] == 4 and r.json()["name"] == "Active golfers"

    # Ids that are not customers of the tenant (unknown, or another tenant's) are named; nothing changes.
    bad = {**body, "customerIds": [ids["s-4"], "customer_nope", foreign]}
    r = await stack.call("POST", "/segments", json=bad)
    assert_problem(r, 422, "$.customerIds[1]", "$.customerIds[2]")
    r = await stack.call("POST", f"/segments/{segment['id']}/members", json={"customerIds": [foreign]})
    assert_problem(r, 422, "$.customerIds[0]")
    assert await count(stack, Segment) == 1
    async with stack.engine.connect() as conn:
        members = (
            await conn.execute(
                select(func.count())
                .select_from(SegmentMember)
                .where(SegmentMember.segment_id == segment["id"])
            )
        ).scalar_one()
    assert members == 4

    assert_problem(await stack.call("POST", "/segments", json={**body, "filter": {}}), 422, "$.filter")
    assert_problem(await stack.call("POST", "/segments", json={**body, "type": "SMART"}), 422, "$.type")
    assert_problem(await stack.call("POST", "/segments", json={**body, "name": ""}), 422, "$.name")
    assert_problem(await stack.call("POST", "/segments", json={**body, "size": 3}), 422, "$.size")
    assert_problem(await stack.call("GET", "/segments/segment_nope"), 404)
    assert await count(stack, Segment) == 1


async def test_dynamic_segments_on_club_and_attributes(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    await import_json(
        stack,
        [
            {"externalId": "d-1", "clubId": "club_1", "attributes": {"tier": "gold", "handicap": 5}},
            {"externalId": "d-2", "clubId": "club_1", "attributes": {"tier": "silver", "handicap": 20}},
            {"externalId": "d-3", "clubId": "club_2", "attributes": {"tier": "gold", "handicap": 9}},
            {"externalId": "d-4", "clubId": "club_2"},
        ],
    )
    # Another tenant's matching customers are never counted.
    await import_json(
        stack,
        [{"externalId": "d-1", "clubId": "club_1", "attributes": {"tier": "gold"}}],
        tenant=stack.other_tenant,
    )

    async def size_of(filter_: dict[str, Any]) -> int:
        body = {"tenantId": stack.tenant, "name": "dyn", "type": "DYNAMIC", "filter": filter_}
        r = await stack.call("POST", "/segments", json=body)
        assert r.status_code == 201, r.text
        got = await stack.call("GET", f"/segments/{r.json()['id']}")
        assert got.json()["size"] == r.json()["size"] and got.json()["filter"] == filter_
        return int(r.json()["size"])

    assert await size_of({"field": "clubId", "op": "eq", "value": "club_1"}) == 2
    assert await size_of({"field": "attributes.tier", "op": "eq", "value": "gold"}) == 2
    assert (
        await size_of(
            {
                "all": [
                    {"field": "attributes.tier", "op": "eq", "value": "gold"},
                    {"field": "clubId", "op": "eq", "value": "club_2"},
                ]
            }
        )
        == 1
    )
    assert await size_of({"field": "attributes.handicap", "op": "lt", "value": 10}) == 2
    assert await size_of({}) == 4

    # The filter follows the data: a new gold member counts at once.
    await import_json(stack, [{"externalId": "d-5", "attributes": {"tier": "gold"}}])
    listing = await stack.call("GET", "/segments", params={"tenantId": stack.tenant, "type": "DYNAMIC"})
    assert listing.status_code == 200 and listing.json()["meta"]["total"] == 5
    gold = next(
        s
        for s in listing.json()["data"]
        if s["filter"] == {"field": "attributes.tier", "op": "eq", "value": "gold"}
    )
    assert "size" not in gold
    assert (await stack.call("GET", f"/segments/{gold['id']}")).json()["size"] == 3

    base = {"tenantId": stack.tenant, "name": "dyn", "type": "DYNAMIC"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**base, "filter": {"field": "shoeSize", "op": "eq", "value": 9}}, "$.filter.field"),
        (
            {**base, "filter": {"all": [{"field": "clubId", "op": "like", "value": "x"}]}},
            "$.filter.all[0].op",
        ),
        ({**base, "filter": {"field": "clubId", "op": "in", "value": []}}, "$.filter.value"),
        (base, "$.filter"),
        ({**base, "filter": {}, "customerIds": []}, "$.customerIds"),
    ]
    before = await count(stack, Segment)
    for body, path in cases:
        assert_problem(await stack.call("POST", "/segments", json=body), 422, path)
    assert await count(stack, Segment) == before
    # A number comparison on text values is type-safe: it matches nobody, never a 500.
    text_cmp = {**base, "filter": {"field": "attributes.tier", "op": "gt", "value": 3}}
    r = await stack.call("POST", "/segments", json=text_cmp)
    assert r.status_code == 201 and r.json()["size"] == 0, r.text

    r = await stack.call("POST", f"/segments/{gold['id']}/members", json={"customerIds": []})
    body = assert_problem(r, 409)
    assert body["segmentType"] == "DYNAMIC"


# ---- templates --------------------------------------------------------------------------------------


async def test_template_validation(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    email = {
        "tenantId": stack.tenant,
        "name": "Welcome",
        "channel": "EMAIL",
        "subject": "Hi {{ firstName }}",
        "html": "<p>Hello {{ firstName }}</p>",
        "text": "Hello {{ firstName }}",
    }
    r = await stack.call("POST", "/templates", json=email)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"].startswith("template_") and created["channel"] == "EMAIL" and created["body"] is None
    r = await stack.call("GET", f"/templates/{created['id']}")
    assert r.status_code == 200 and r.json()["html"] == email["html"]
    sms = {"tenantId": stack.tenant, "name": "Nudge", "channel": "SMS", "body": "Hi {{ firstName }}"}
    assert (await stack.call("POST", "/templates", json=sms)).status_code == 201
    html_only = {k: v for k, v in email.items() if k != "text"}
    assert (await stack.call("POST", "/templates", json=html_only)).status_code == 201

    cases: list[tuple[dict[str, Any], str]] = [
        ({k: v for k, v in email.items() if k != "subject"}, "$.subject"),
        ({k: v for k, v in email.items() if k not in ("html", "text")}, "$.html"),
        ({**email, "body": "sms text"}, "$.body"),
        ({**sms, "subject": "x"}, "$.subject"),
        ({**sms, "html": "<p>x</p>"}, "$.html"),
        ({k: v for k, v in sms.items() if k != "body"}, "$.body"),
        ({**sms, "body": "x" * 1601}, "$.body"),
        ({**email, "html": "<p>{{ firstName </p>"}, "$.html"),
        ({**email, "subject": "{% if %}"}, "$.subject"),
        ({**sms, "body": "{% for x in attributes %}"}, "$.body"),
        ({**sms, "channel": "PIGEON"}, "$.channel"),
        ({**sms, "footer": "x"}, "$.footer"),
    ]
    for body, path in cases:
        assert_problem(await stack.call("POST", "/templates", json=body), 422, path)
    assert await count(stack, Template) == 3

    listing = await stack.call("GET", "/templates", params={"tenantId": stack.tenant, "channel": "EMAIL"})
    assert listing.status_code == 200 and listing.json()["meta"]["total"] == 2
    assert "html" not in listing.json()["data"][0]
    assert_problem(await stack.call("GET", "/templates/template_nope"), 404)


async def test_template_preview_personalises_in_a_sandbox(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    r = await stack.call(
        "POST",
        "/customers",
        json={
            "tenantId": stack.tenant,
            "externalId": "p-1",
            "firstName": "Ann",
            "email": "ann@example.com",
            "attributes": {"tier": "gold"},
        },
    )
    customer_id = r.json()["id"]
    email = {
        "tenantId": stack.tenant,
        "name": "Tiered",
        "channel": "EMAIL",
        "subject": "{{ firstName }}, you are {{ attributes.tier }}",
        "html": "<p>Hello {{ firstName }} {{ lastName }}</p>",
        "text": "Hello {{ firstName }} <{{ email }}>",
    }
    template_id = (await stack.call("POST", "/templates", json=email)).json()["id"]

    r = await stack.call("POST", f"/templates/{template_id}/preview", json={"customerId": customer_id})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "subject": "Ann, you are gold",
        "html": "<p>Hello Ann </p>",
        "text": "Hello Ann <ann@example.com>",
    }
    sample = {"firstName": "<b>Bo</b>", "lastName": "Ray", "attributes": {"tier": "silver"}}
    r = await stack.call("POST", f"/templates/{template_id}/preview", json={"sample": sample})
    assert r.status_code == 200
    assert r.json()["subject"] == "<b>Bo</b>, you are silver"
    assert r.json()["html"] == "<p>Hello &lt;b&gt;Bo&lt;/b&gt; Ray</p>"  # html is autoescaped

    sms = {"tenantId": stack.tenant, "name": "S", "channel": "SMS", "body": "Hi {{ firstName }}!"}
    sms_id = (await stack.call("POST", "/templates", json=sms)).json()["id"]
    r = await stack.call("POST", f"/templates/{sms_id}/preview", json={"customerId": customer_id})
    assert r.status_code == 200 and r.json() == {"body": "Hi Ann!", "encoding": "GSM-7", "segments": 1}
    r = await stack.call("POST", f"/templates/{sms_id}/preview", json={})
    assert r.status_code == 200 and r.json()["body"] == "Hi !"

    # The sandbox's escapes are refused: tests/test_templates.py.

    other_customer = (
        await stack.call(
            "POST",
            "/customers",
            stack.other_tenant,
            json={"tenantId": stack.other_tenant, "externalId": "o-1"},
        )
    ).json()["id"]
    r = await stack.call("POST", f"/templates/{template_id}/preview", json={"customerId": other_customer})
    assert_problem(r, 422, "$.customerId")
    r = await stack.call(
        "POST", f"/templates/{template_id}/preview", json={"customerId": customer_id, "sample": sample}
    )
    assert_problem(r, 422, "$.sample")
    r = await stack.call("POST", f"/templates/{template_id}/preview", json={"sample": {"nick": "x"}})
    assert_problem(r, 422, "$.sample.nick")
    r = await stack.api.post(
        f"/templates/{template_id}/preview",
        content=b'{"sample": {"attributes": {"tier": "\\ud800"}}}',
        headers=stack.headers() | {"Content-Type": "application/json"},
    )
    assert_problem(r, 422, "$.sample.attributes")
    assert_problem(await stack.call("POST", "/templates/template_nope/preview", json={}), 404)


# ---- tenancy and auth -------------------------------------------------------------------------------


async def test_tenant_isolation(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    a, b = stack.tenant, stack.other_tenant
    customer = (await stack.call("POST", "/customers", json={"tenantId": a, "externalId": "t-1"})).json()
    segment = (
        await stack.call(
            "POST",
            "/segments",
            json={"tenantId": a, "name": "A", "type": "STATIC", "customerIds": [customer["id"]]},
        )
    ).json()
    template = (
        await stack.call(
            "POST", "/templates", json={"tenantId": a, "name": "A", "channel": "SMS", "body": "hi"}
        )
    ).json()
    await stack.call("POST", "/customers", b, json={"tenantId": b, "externalId": "t-b"})
    b_customer = (await customer_ids(stack, b))["t-b"]

    # Tenant B's token: A's objects do not exist ...
    for method, path, body in [
        ("GET", f"/customers/{customer['id']}", None),
        ("GET", f"/segments/{segment['id']}", None),
        ("POST", f"/segments/{segment['id']}/members", {"customerIds": [b_customer]}),
        ("GET", f"/templates/{template['id']}", None),
        ("POST", f"/templates/{template['id']}/preview", {}),
    ]:
        r = await stack.call(method, path, b, json=body)
        problem = assert_problem(r, 404)
        assert a not in r.text, problem
    # ... and naming tenant A in a body or a query is a 403.
    attempts: list[tuple[str, str, dict[str, Any] | None, dict[str, str] | None]] = [
        ("POST", "/customers", {"tenantId": a, "externalId": "hijack"}, None),
        ("POST", "/customers/import", {"tenantId": a, "customers": [{"externalId": "hijack"}]}, None),
        ("POST", "/segments", {"tenantId": a, "name": "x", "type": "DYNAMIC", "filter": {}}, None),
        ("POST", "/templates", {"tenantId": a, "name": "x", "channel": "SMS", "body": "x"}, None),
        ("GET", "/customers", None, {"tenantId": a}),
        ("GET", "/segments", None, {"tenantId": a}),
        ("GET", "/templates", None, {"tenantId": a}),
    ]
    for method, path, body, params in attempts:
        assert_problem(await stack.call(method, path, b, json=body, params=params), 403)
    assert_problem(await post_csv(stack, "externalId\nhijack\n", tenant=b, query_tenant=a), 403)
    # A static segment of B cannot take A's customers.
    r = await stack.call(
        "POST",
        "/segments",
        b,
        json={"tenantId": b, "name": "B", "type": "STATIC", "customerIds": [customer["id"]]},
    )
    assert_problem(r, 422, "$.customerIds[0]")

    assert await count(stack, Customer, a) == 1 and await count(stack, Customer, b) == 1
    assert await count(stack, Segment, a) == 1 and await count(stack, Segment, b) == 0
    assert await count(stack, Template, b) == 0
    assert (await customer_row(stack, "hijack", a)) is None


async def test_missing_or_invalid_token_is_401(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    requests = [
        ("POST", "/customers", {"tenantId": stack.tenant, "externalId": "n-1"}),
        ("POST", "/customers/import", {"tenantId": stack.tenant, "customers": [{"externalId": "n-1"}]}),
        ("GET", "/customers/customer_x", None),
        ("GET", f"/customers?tenantId={stack.tenant}", None),
        ("POST", "/segments", {"tenantId": stack.tenant, "name": "x", "type": "DYNAMIC", "filter": {}}),
        ("GET", f"/segments?tenantId={stack.tenant}", None),
        ("GET", "/segments/segment_x", None),
        ("POST", "/segments/segment_x/members", {"customerIds": []}),
        ("POST", "/templates", {"tenantId": stack.tenant, "name": "x", "channel": "SMS", "body": "x"}),
        ("GET", f"/templates?tenantId={stack.tenant}", None),
        ("GET", "/templates/template_x", None),
        ("POST", "/templates/template_x/preview", {}),
    ]
    for headers in ({}, {"Authorization": "Bearer not.a.jwt"}, {"Authorization": "Basic dXNlcjpwdw=="}):
        for method, path, body in requests:
            r = await stack.api.request(method, path, json=body, headers=headers)
            assert_problem(r, 401)
    assert await count(stack, Customer) == 0 and await count(stack, Segment) == 0
    assert await count(stack, Template) == 0
    assert json.loads(r.text)["title"] == "Unauthorized"


async def test_unstorable_values_are_refused_not_500(make_stack: StackFactory) -> None:
    """Postgres cannot store U+0000 in text or jsonb, nor NaN in jsonb: every way in is a 4xx."""
    stack = await make_stack(worker=False)
    t = stack.tenant
    bodies: list[tuple[str, dict[str, Any], str]] = [
        ("/customers", {"tenantId": t, "externalId": "a\u0000b"}, "$.externalId"),
        ("/customers", {"tenantId": t, "externalId": "n", "firstName": "\u0000"}, "$.firstName"),
        ("/customers", {"tenantId": t, "externalId": "n", "email": "a\u0000@example.com"}, "$.email"),
        ("/customers", {"tenantId": t, "externalId": "n", "attributes": {"k": ["\u0000"]}}, "$.attributes"),
        ("/customers", {"tenantId": t, "externalId": "n", "attributes": {"\u0000": 1}}, "$.attributes"),
        ("/segments", {"tenantId": t, "name": "\u0000", "type": "STATIC"}, "$.name"),
        (
            "/segments",
            {"tenantId": t, "name": "s", "type": "STATIC", "customerIds": ["c\u0000"]},
            "$.customerIds[0]",
        ),
        (
            "/segments",
            {
                "tenantId": t,
                "name": "s",
                "type": "DYNAMIC",
                "filter": {"field": "email", "op": "eq", "value": "\u0000"},
            },
            "$.filter.value",
        ),
        ("/templates", {"tenantId": t, "name": "x", "channel": "SMS", "body": "hi\u0000"}, "$.body"),
    ]
    for path, body, error_path in bodies:
        assert_problem(await stack.call("POST", path, json=body), 422, error_path)
    r = await post_csv(stack, "externalId,firstName\nz-1,a\x00b\n")
    assert r.status_code == 200 and error_paths(r.json()) == ["row 1.firstName"]
    for resource in ("customers", "segments", "templates"):
        assert_problem(await stack.call("GET", f"/{resource}/x%00y"), 404)
        assert_problem(await stack.call("GET", f"/{resource}", params={"tenantId": t, "clubId": "\x00"}), 422)
    assert_problem(await stack.call("GET", "/customers", params={"tenantId": t, "email": "\x00"}), 422)
    template = await stack.call(
        "POST", "/templates", json={"tenantId": t, "name": "x", "channel": "SMS", "body": "x"}
    )
    r = await stack.call("POST", f"/templates/{template.json()['id']}/preview", json={"customerId": "\u0000"})
    assert_problem(r, 422, "$.customerId")
    json_headers = stack.headers() | {"Content-Type": "application/json"}
    raw_bodies: list[tuple[str, str, int, str | None]] = [
        (
            "/customers",
            f'{{"tenantId":"{t}","externalId":"n","attributes":{{"x":NaN}}}}',
            422,
            "$.attributes",
        ),
        (
            "/segments",
            f'{{"tenantId":"{t}","name":"s","type":"DYNAMIC",'
            '"filter":{"field":"attributes.h","op":"gt","value":NaN}}',
            422,
            "$.filter.value",
        ),
        (
            "/customers",
            f'{{"tenantId":"{t}","externalId":"n","attributes":{{"x":1{"0" * 5000}}}}}',
            400,
            None,
        ),
        ("/customers/import", f'{{"tenantId":"{t}","customers":[{{"externalId":{"9" * 5000}}}]}}', 400, None),
        ("/customers/import", "[" * 100_000, 400, None),
        (
            "/customers",
            f'{{"tenantId":"{t}","externalId":"n","attributes":{{"k":["\\ud800"]}}}}',
            422,
            "$.attributes",
        ),
        ("/customers", f'{{"tenantId":"{t}","externalId":"n","firstName":"\\udfff"}}', 422, "$.firstName"),
        (
            "/segments",
            f'{{"tenantId":"{t}","name":"s","type":"DYNAMIC","filter":{{"field":"email","value":"\\ud800"}}}}',
            422,
            "$.filter.value",
        ),
    ]
    # In an import, such a row is rejected and reported; the others are written.
    for row_body, field in [
        (
            f'{{"tenantId":"{t}","customers":[{{"externalId":"\\u0000"}},{{"externalId":"ok"}}]}}',
            "externalId",
        ),
        (
            f'{{"tenantId":"{t}","customers":[{{"externalId":"n","attributes":{{"x":[Infinity]}}}},'
            '{"externalId":"ok"}]}',
            "attributes",
        ),
    ]:
        r = await stack.api.post("/customers/import", content=row_body.encode(), headers=json_headers)
        assert r.status_code == 200, r.text
        assert r.json()["rejected"] == 1 and error_paths(r.json()) == [f"$.customers[0].{field}"]
    async with stack.engine.begin() as conn:
        await conn.execute(delete(Customer).where(Customer.tenant_id == t))
    for url, raw, status, want in raw_bodies:
        r = await stack.api.post(url, content=raw.encode(), headers=json_headers)
        assert_problem(r, status, *([want] if want else []))
    assert await count(stack, Customer) == 0 and await count(stack, Segment) == 0


@pytest.mark.skipif(not os.environ.get("CAMPAIGNS_BENCH"), reason="benchmark: set CAMPAIGNS_BENCH=1")
async def test_benchmark_import_100k_rows(make_stack: StackFactory) -> None:
    """`CAMPAIGNS_BENCH=1 pytest tests/test_audience_api.py -k benchmark -s` prints the timings."""
    stack = await make_stack(worker=False)
    rows = [
        {
            "externalId": f"b-{i:06d}",
            "email": f"member{i}@example.com",
            "phone": f"+2782{i:07d}",
            "firstName": f"First{i}",
            "lastName": f"Last{i}",
            "clubId": f"club_{i % 50}",
            "attributes": {"tier": ("gold", "silver", "bronze")[i % 3], "handicap": i % 36},
        }
        for i in range(100_000)
    ]
    changed = [{**row, "firstName": f"Changed{i}"} for i, row in enumerate(rows)]
    # 1 row in 100 invalid (a phone too short for its country): reported, the others written.
    mixed = [
        {**row, "externalId": f"m-{i:06d}", "phone": "+1555123" if i % 100 == 7 else row["phone"]}
        for i, row in enumerate(rows)
    ]
    headers = stack.headers() | {"Content-Type": "application/json"}
    timings: dict[str, float] = {}
    for label, batch, expected in (
        ("json create", rows, (100_000, 0)),
        ("json re-import unchanged", rows, (0, 100_000)),
        ("json update", changed, (0, 100_000)),
        ("json create, 1% rows invalid", mixed, (99_000, 0)),
    ):
        body = json.dumps({"tenantId": stack.tenant, "customers": batch}).encode()
        started = time.perf_counter()
        r = await stack.api.post("/customers/import", content=body, headers=headers, timeout=300)
        timings[label] = time.perf_counter() - started
        assert r.status_code == 200, r.text[:500]
        assert (r.json()["created"], r.json()["updated"]) == expected
    lines = ["externalId,email,phone,firstName,lastName,clubId,attributes.tier"]
    lines += [f"c-{i:06d},c{i}@example.com,+2783{i:07d},F{i},L{i},club_{i % 50},gold" for i in range(100_000)]
    started = time.perf_counter()
    r = await post_csv(stack, "\n".join(lines) + "\n")
    timings["csv create"] = time.perf_counter() - started
    assert r.status_code == 200 and r.json()["created"] == 100_000
    assert await count(stack, Customer) == 299_000
    assert (await customer_row(stack, "b-000007"))["first_name"] == "Changed7"
    print(
        f"\n100,000-row import ({len(body) / 1e6:.1f} MB JSON): "
        + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
    )
