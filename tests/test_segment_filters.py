"""DYNAMIC segments (README "Dynamic segments"): every operator of the filter language against real
Postgres, through the API (`size` of GET /segments/:id and the members of GET /segments/:id/preview)."""

from typing import Any

import pytest

from tests.conftest import Stack, StackFactory

PEOPLE: list[dict[str, Any]] = [
    {
        "externalId": "ann",
        "email": "ann@golf.example.com",
        "firstName": "Ann",
        "clubId": "club_1",
        "smsOptIn": False,
        "attributes": {"tier": "gold", "handicap": 5, "vip": True, "since": "2019-04-01"},
    },
    {
        "externalId": "bob",
        "email": "bob@tennis.example.com",
        "firstName": "Bob",
        "clubId": "club_1",
        "attributes": {"tier": "silver", "handicap": 18.5, "vip": False},
    },
    {
        "externalId": "cy",
        "email": "cy@golf.example.com",
        "firstName": "Cy",
        "clubId": "club_2",
        "attributes": {"tier": "bronze", "handicap": 28, "since": "2023-01-15"},
    },
    {
        "externalId": "dee",
        "phone": "+27821234567",
        "clubId": None,
        "attributes": {"tier": 3, "handicap": "n/a"},
    },
]
EVERYONE = {"ann", "bob", "cy", "dee"}


def cond(field: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value}


CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("eq text", cond("clubId", "eq", "club_1"), {"ann", "bob"}),
    ("eq null", cond("clubId", "eq", None), {"dee"}),
    ("eq bool", cond("smsOptIn", "eq", False), {"ann"}),
    ("eq attribute", cond("attributes.tier", "eq", "gold"), {"ann"}),
    ("eq attribute number", cond("attributes.tier", "eq", 3), {"dee"}),
    ("eq attribute bool", cond("attributes.vip", "eq", True), {"ann"}),
    ("ne text (null counts as different)", cond("clubId", "ne", "club_1"), {"cy", "dee"}),
    ("ne attribute", cond("attributes.tier", "ne", "gold"), {"bob", "cy", "dee"}),
    ("in", cond("clubId", "in", ["club_2", "club_9"]), {"cy"}),
    ("in attribute (typed)", cond("attributes.tier", "in", ["gold", "bronze", "3"]), {"ann", "cy"}),
    ("nin", cond("clubId", "nin", ["club_1"]), {"cy", "dee"}),
    ("nin attribute", cond("attributes.tier", "nin", ["gold", 3]), {"bob", "cy"}),
    ("gt number attribute", cond("attributes.handicap", "gt", 18), {"bob", "cy"}),
    ("gte number attribute", cond("attributes.handicap", "gte", 18.5), {"bob", "cy"}),
    ("lt number attribute", cond("attributes.handicap", "lt", 18.5), {"ann"}),
    ("lte number attribute", cond("attributes.handicap", "lte", 18.5), {"ann", "bob"}),
    ("gt text attribute", cond("attributes.since", "gt", "2020-01-01"), {"cy"}),
    ("lt text field", cond("firstName", "lt", "Bz"), {"ann", "bob"}),
    ("gte timestamp", cond("createdAt", "gte", "2000-01-01T00:00:00Z"), EVERYONE),
    ("lt timestamp", cond("createdAt", "lt", "2000-01-01"), set()),
    ("exists field", cond("email", "exists", True), {"ann", "bob", "cy"}),
    ("exists false", cond("email", "exists", False), {"dee"}),
    ("exists attribute", cond("attributes.since", "exists"), {"ann", "cy"}),
    ("exists attribute false", cond("attributes.vip", "exists", False), {"cy", "dee"}),
    # Addresses are compared in their stored (canonical) form, however the filter writes them.
    ("eq email in any case", cond("email", "eq", " BOB@Tennis.Example.COM "), {"bob"}),
    ("in email in any case", cond("email", "in", ["Cy@Golf.example.com", "nobody@x.example"]), {"cy"}),
    ("ne email in any case", cond("email", "ne", "BOB@tennis.example.com"), {"ann", "cy", "dee"}),
    ("eq phone with a trunk zero", cond("phone", "eq", "+270821234567"), {"dee"}),
    ("contains (case-insensitive)", cond("email", "contains", "GOLF"), {"ann", "cy"}),
    ("contains attribute", cond("attributes.tier", "contains", "ver"), {"bob"}),
    ("contains is literal", cond("email", "contains", "%"), set()),
    ("startsWith", cond("email", "startsWith", "b"), {"bob"}),
    ("startsWith attribute", cond("attributes.since", "startsWith", "2019"), {"ann"}),
    (
        "all",
        {"all": [cond("clubId", "eq", "club_1"), cond("attributes.handicap", "lt", 10)]},
        {"ann"},
    ),
    (
        "any",
        {"any": [cond("clubId", "eq", "club_2"), cond("attributes.vip", "eq", False)]},
        {"bob", "cy"},
    ),
    ("not", {"not": cond("email", "contains", "golf")}, {"bob", "dee"}),
    ("not eq is ne, empty fields included", {"not": cond("clubId", "eq", "club_1")}, {"cy", "dee"}),
    ("not gt, empty fields included", {"not": cond("firstName", "gt", "B")}, {"ann", "dee"}),
    ("not in", {"not": cond("clubId", "in", ["club_2"])}, {"ann", "bob", "dee"}),
    (
        "nested",
        {
            "all": [
                {"any": [cond("clubId", "eq", "club_1"), cond("clubId", "exists", False)]},
                {"not": {"all": [cond("attributes.tier", "eq", "silver")]}},
            ]
        },
        {"ann", "dee"},
    ),
    ("empty all", {"all": []}, EVERYONE),
    ("empty any", {"any": []}, set()),
    ("everyone", {}, EVERYONE),
]


@pytest.fixture
async def audience(make_stack: StackFactory) -> Stack:
    stack = await make_stack(worker=False)
    r = await stack.call("POST", "/customers/import", json={"tenantId": stack.tenant, "customers": PEOPLE})
    assert r.status_code == 200 and r.json()["created"] == len(PEOPLE), r.text
    # Another tenant's look-alike is never a member.
    other = [{**PEOPLE[0], "externalId": "ann-other"}]
    r = await stack.call(
        "POST",
        "/customers/import",
        stack.other_tenant,
        json={"tenantId": stack.other_tenant, "customers": other},
    )
    assert r.status_code == 200
    return stack


@pytest.mark.parametrize(("name", "filter_", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_filter_operator(
    audience: Stack, name: str, filter_: dict[str, Any], expected: set[str]
) -> None:
    stack = audience
    body = {"tenantId": stack.tenant, "name": name, "type": "DYNAMIC", "filter": filter_}
    r = await stack.call("POST", "/segments", json=body)
    assert r.status_code == 201, r.text
    segment = r.json()
    assert segment["size"] == len(expected)
    r = await stack.call("GET", f"/segments/{segment['id']}/preview", params={"limit": 100})
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["segmentId"] == segment["id"] and preview["size"] == len(expected)
    assert {c["externalId"] for c in preview["data"]} == expected


async def test_preview_samples_members_in_id_order(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    people = [{"externalId": f"p-{i}", "firstName": f"P{i}", "clubId": "club_1"} for i in range(30)]
    await stack.call("POST", "/customers/import", json={"tenantId": stack.tenant, "customers": people})
    listed = await stack.call("GET", "/customers", params={"tenantId": stack.tenant, "take": 100})
    ids = sorted(c["id"] for c in listed.json()["data"])
    static = await stack.call(
        "POST",
        "/segments",
        json={"tenantId": stack.tenant, "name": "s", "type": "STATIC", "customerIds": ids[:20]},
    )
    dynamic = await stack.call(
        "POST",
        "/segments",
        json={
            "tenantId": stack.tenant,
            "name": "d",
            "type": "DYNAMIC",
            "filter": cond("clubId", "eq", "club_1"),
        },
    )
    for segment, size in ((static.json(), 20), (dynamic.json(), 30)):
        r = await stack.call("GET", f"/segments/{segment['id']}/preview")
        assert r.status_code == 200, r.text
        preview = r.json()
        assert preview["size"] == size and [c["id"] for c in preview["data"]] == ids[:10]  # default limit 10
        assert set(preview["data"][0]) >= {"id", "externalId", "email", "emailOptIn", "emailUnsubscribed"}
        r = await stack.call("GET", f"/segments/{segment['id']}/preview", params={"limit": 3})
        assert [c["id"] for c in r.json()["data"]] == ids[:3]
        for limit in (0, 101):
            r = await stack.call("GET", f"/segments/{segment['id']}/preview", params={"limit": limit})
            assert r.status_code == 422
        r = await stack.call("GET", f"/segments/{segment['id']}/preview", stack.other_tenant)
        assert r.status_code == 404
    assert (await stack.call("GET", "/segments/segment_nope/preview")).status_code == 404
