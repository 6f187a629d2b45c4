"""Campaign endpoints: the contract's error codes, tenant isolation, PATCH/DELETE rules, idempotency."""

from typing import Any

import jwt
import pytest
from sqlalchemy import text

from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, wait_for


async def draft(stack: Stack, n: int = 3) -> tuple[str, dict[str, Any]]:
    audience = await make_audience(stack.engine, stack.tenant, n)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t)
    return cid, {"segment": audience.segment_id, "email": email_t, "sms": sms_t}


async def row_count(stack: Stack, tenant: str) -> int:
    async with stack.engine.connect() as conn:
        return int(
            (
                await conn.execute(text("SELECT count(*) FROM campaigns WHERE tenant_id = :t"), {"t": tenant})
            ).scalar_one()
        )


def assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    assert "Traceback" not in r.text and "SELECT" not in r.text
    return body


async def test_create_and_get_match_the_seed_shape(make_stack: StackFactory) -> None:
    stack = await make_stack()
    cid, _refs = await draft(stack)
    r = await stack.call("GET", f"/campaigns/{cid}")
    body = r.json()
    for key in (
        "id tenantId clubId name description type status channels segmentId segmentName emailTemplateId"
        " smsTemplateId scheduledAt timezone targetCount sentCount deliveredCount openedCount clickedCount"
        " createdBy createdAt updatedAt"
    ).split():
        assert key in body, key
    assert body["status"] == "DRAFT" and body["segmentName"] == "Members" and body["createdBy"] == "user_test"
    assert body["createdAt"].endswith("Z") and body["timezone"] == "UTC"
    listed = (await stack.call("GET", "/campaigns", params={"tenantId": stack.tenant})).json()
    assert listed["data"][0]["id"] == cid and listed["meta"]["total"] == 1
    assert set(listed["data"][0]) >= {
        "id",
        "name",
        "type",
        "status",
        "channels",
        "segmentId",
        "scheduledAt",
        "targetCount",
        "sentCount",
        "openRate",
        "createdAt",
    }


async def test_auth_errors(make_stack: StackFactory) -> None:
    stack = await make_stack()
    assert_problem(await stack.api.get("/campaigns", params={"tenantId": stack.tenant}), 401)
    bad = {"Authorization": "Bearer not-a-jwt"}
    assert_problem(await stack.api.get("/campaigns", params={"tenantId": stack.tenant}, headers=bad), 401)
    forged = jwt.encode(
        {"sub": "x", "tenant_id": stack.tenant}, "wrong-secret-wrong-secret-wrong-secret", "HS256"
    )
    r = await stack.api.get(
        "/campaigns", params={"tenantId": stack.tenant}, headers={"Authorization": f"Bearer {forged}"}
    )
    assert_problem(r, 401)
    no_tenant = jwt.encode({"sub": "x"}, stack.settings.jwt_secret, "HS256")
    r = await stack.api.get(
        "/campaigns", params={"tenantId": stack.tenant}, headers={"Authorization": f"Bearer {no_tenant}"}
    )
    assert_problem(r, 401)


async def test_tenant_isolation(make_stack: StackFactory) -> None:
    stack = await make_stack()
    cid, refs = await draft(stack)
    other = stack.other_tenant
    # Another tenant's token: every by-id endpoint is a 404, exactly as if it did not exist.
    for method, path, body in (
        ("GET", f"/campaigns/{cid}", None),
        ("PATCH", f"/campaigns/{cid}", {"name": "stolen"}),
        ("DELETE", f"/campaigns/{cid}", None),
        ("POST", f"/campaigns/{cid}/execute", None),
        ("POST", f"/campaigns/{cid}/schedule", {"scheduledAt": "2099-01-01T00:00:00Z"}),
        ("POST", f"/campaigns/{cid}/pause", None),
        ("POST", f"/campaigns/{cid}/resume", None),
        ("POST", f"/campaigns/{cid}/cancel", None),
        ("GET", f"/campaigns/{cid}/recipients", None),
        ("GET", f"/campaigns/{cid}/stats", None),
        ("GET", f"/campaigns/{cid}/interactions", None),
    ):
        r = await stack.call(method, path, tenant=other, json=body)
        assert_problem(r, 404)
        unknown = await stack.call(method, path.replace(cid, "campaign_doesnotexist"), json=body)
        assert unknown.json()["detail"].replace("campaign_doesnotexist", cid) == r.json()["detail"]
    # A tenantId the token does not grant: 403.
    assert_problem(
        await stack.call("GET", "/campaigns", tenant=other, params={"tenantId": stack.tenant}), 403
    )
    r = await stack.call(
        "POST",
        "/campaigns",
        tenant=other,
        json={"tenantId": stack.tenant, "name": "x", "channels": ["EMAIL"]},
    )
    assert_problem(r, 403)
    # Referring to another tenant's segment/template: 422, nothing created.
    r = await stack.call(
        "POST",
        "/campaigns",
        tenant=other,
        json={
            "tenantId": other,
            "name": "x",
            "channels": ["EMAIL"],
            "segmentId": refs["segment"],
            "emailTemplateId": refs["email"],
        },
    )
    refused = assert_problem(r, 422)
    assert {e["path"] for e in refused["errors"]} == {"$.segmentId", "$.emailTemplateId"}
    assert await row_count(stack, other) == 0
    assert (await stack.call("GET", "/campaigns", tenant=other, params={"tenantId": other})).json()[
        "data"
    ] == []
    assert (await stack.call("GET", f"/campaigns/{cid}")).json()["name"] == "Spring newsletter"


@pytest.mark.parametrize(
    "body, path",
    [
        ({"name": "x", "channels": ["EMAIL"]}, "$.tenantId"),
        ({"tenantId": "T", "channels": ["EMAIL"]}, "$.name"),
        ({"tenantId": "T", "name": "", "channels": ["EMAIL"]}, "$.name"),
        ({"tenantId": "T", "name": "x", "channels": []}, "$.channels"),
        ({"tenantId": "T", "name": "x", "channels": ["FAX"]}, "$.channels[0]"),
        ({"tenantId": "T", "name": "x", "channels": ["EMAIL", "EMAIL"]}, "$.channels"),
        ({"tenantId": "T", "name": "x", "channels": ["EMAIL"], "timezone": "Mars/Olympus"}, "$.timezone"),
        ({"tenantId": "T", "name": "x", "channels": ["EMAIL"], "type": "WEEKLY"}, "$.type"),
        ({"tenantId": "T", "name": "x", "channels": ["EMAIL"], "colour": "red"}, "$.colour"),
        (
            {"tenantId": "T", "name": "x", "channels": ["EMAIL"], "conversionWindowHours": 0},
            "$.conversionWindowHours",
        ),
    ],
)
async def test_create_validation(make_stack: StackFactory, body: dict[str, Any], path: str) -> None:
    stack = await make_stack(worker=False)
    body = {k: (stack.tenant if v == "T" else v) for k, v in body.items()}
    problem = assert_problem(await stack.call("POST", "/campaigns", json=body), 422)
    assert path in {e["path"] for e in problem["errors"]}, problem
    assert await row_count(stack, stack.tenant) == 0


async def test_malformed_and_oversized_bodies(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    r = await stack.api.post(
        "/campaigns",
        content=b'{"tenantId": ',
        headers={**stack.headers(), "Content-Type": "application/json"},
    )
    assert_problem(r, 400)
    big = {
        "tenantId": stack.tenant,
        "name": "x",
        "channels": ["EMAIL"],
        "description": "x" * (1024 * 1024 + 1),
    }
    assert_problem(await stack.call("POST", "/campaigns", json=big), 413)
    assert await row_count(stack, stack.tenant) == 0
    bad_query = await stack.call("GET", "/campaigns", params={"tenantId": stack.tenant, "status": "SLEEPING"})
    assert_problem(bad_query, 422)
    assert_problem(await stack.call("GET", "/campaigns"), 422)  # tenantId is required
    assert_problem(await stack.call("GET", "/campaigns", params={"tenantId": stack.tenant, "take": 0}), 422)


async def test_idempotency_key(make_stack: StackFactory) -> None:
    stack = await make_stack()
    body = {"tenantId": stack.tenant, "name": "Once", "channels": ["EMAIL"]}
    headers = {**stack.headers(), "Idempotency-Key": "key-1"}
    first = await stack.api.post("/campaigns", json=body, headers=headers)
    again = await stack.api.post("/campaigns", json=body, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert_problem(await stack.api.post("/campaigns", json={**body, "name": "Other"}, headers=headers), 409)
    assert await row_count(stack, stack.tenant) == 1


async def test_patch_and_delete_rules(make_stack: StackFactory) -> None:
    stack = await make_stack()
    cid, refs = await draft(stack)
    r = await stack.call("PATCH", f"/campaigns/{cid}", json={"name": "Renamed", "channels": ["EMAIL"]})
    assert r.status_code == 200 and r.json()["name"] == "Renamed" and r.json()["channels"] == ["EMAIL"]
    assert_problem(await stack.call("PATCH", f"/campaigns/{cid}", json={"name": None}), 422)
    assert_problem(await stack.call("PATCH", f"/campaigns/{cid}", json={"segmentId": "segment_nope"}), 422)
    assert_problem(await stack.call("PATCH", f"/campaigns/{cid}", json={"smsTemplateId": refs["email"]}), 422)

    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED")
    # Final statuses are read-only; DRAFT-only fields are refused with the current status.
    for change in ({"name": "late"}, {"segmentId": refs["segment"]}, {"description": "d"}):
        problem = assert_problem(await stack.call("PATCH", f"/campaigns/{cid}", json=change), 409)
        assert problem["currentStatus"] == "COMPLETED"
    problem = assert_problem(await stack.call("DELETE", f"/campaigns/{cid}"), 409)
    assert problem["currentStatus"] == "COMPLETED"
    assert (await stack.call("GET", f"/campaigns/{cid}")).json()["name"] == "Renamed"

    cid2, _refs2 = await draft(stack)
    when = "2099-06-01T09:00:00Z"
    assert (
        await stack.call("POST", f"/campaigns/{cid2}/schedule", json={"scheduledAt": when})
    ).status_code == 200
    r = await stack.call("PATCH", f"/campaigns/{cid2}", json={"description": "now with more detail"})
    assert r.status_code == 200 and r.json()["description"] == "now with more detail"
    problem = assert_problem(await stack.call("PATCH", f"/campaigns/{cid2}", json={"channels": ["SMS"]}), 409)
    assert problem["currentStatus"] == "SCHEDULED"
    assert (await stack.call("GET", f"/campaigns/{cid2}")).json()["channels"] == ["EMAIL", "SMS"]
    assert_problem(await stack.call("DELETE", f"/campaigns/{cid2}"), 409)
    assert (await stack.call("POST", f"/campaigns/{cid2}/cancel")).status_code == 200

    cid3, _ = await draft(stack)
    assert (await stack.call("DELETE", f"/campaigns/{cid3}")).status_code == 204
    assert_problem(await stack.call("GET", f"/campaigns/{cid3}"), 404)
    handle = stack.client.get_workflow_handle(f"campaign-{cid3}")
    await handle.result()  # the DRAFT workflow ended with the delete


async def test_each_type_needs_its_own_fields(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    base = {"tenantId": stack.tenant, "name": "x", "channels": ["EMAIL"]}
    for type_, path in (("RECURRING", "$.schedule"), ("TRIGGERED", "$.triggerEvent")):
        r = await stack.call("POST", "/campaigns", json=base | {"type": type_})
        assert assert_problem(r, 422)["errors"][0]["path"] == path
    r = await stack.call("POST", "/campaigns", json=base | {"type": "ONE_TIME", "triggerEvent": "a"})
    assert assert_problem(r, 422)["errors"][0]["path"] == "$.triggerEvent"


async def test_nul_in_path_or_query_is_not_a_server_error(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    assert_problem(await stack.call("GET", "/campaigns/campaign_%00x"), 404)
    assert_problem(await stack.call("GET", "/campaigns/campaign_%00x/recipients"), 404)
    r = await stack.call("GET", "/campaigns", params={"tenantId": stack.tenant, "clubId": "a\x00b"})
    assert_problem(r, 422)


async def test_scheduled_at_on_create_schedules_in_one_call_or_changes_nothing(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack()
    audience = await make_audience(stack.engine, stack.tenant, 3)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    body: dict[str, Any] = {
        "tenantId": stack.tenant,
        "name": "Summer Tournament Promo",
        "type": "ONE_TIME",
        "segmentId": audience.segment_id,
        "channels": ["EMAIL"],
        "emailTemplateId": email_t,
        "scheduledAt": "2099-12-20T09:00:00",
        "timezone": "Africa/Johannesburg",
    }
    r = await stack.call("POST", "/campaigns", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "SCHEDULED" and r.json()["scheduledAt"] == "2099-12-20T07:00:00Z"
    assert r.json()["targetCount"] == 3

    async def total() -> int:
        r = await stack.call("GET", "/campaigns", params={"tenantId": stack.tenant})
        return int(r.json()["meta"]["total"])

    before = await total()
    r = await stack.call("POST", "/campaigns", json=body | {"scheduledAt": "2001-01-01T00:00:00Z"})
    assert_problem(r, 422)
    # The pre-send check refuses it (SMS without a template): the create is undone too.
    r = await stack.call("POST", "/campaigns", json=body | {"channels": ["EMAIL", "SMS"]})
    assert_problem(r, 422)
    assert await total() == before
