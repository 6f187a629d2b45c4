"""Consent and suppression (README "Consent and suppression"): the suppression list API,
unsubscribes through the API, and every skip reason applied when the snapshot is taken and again
just before each message, so that none of those recipients receives anything at the SMTP or SMS
sink."""

import secrets
from collections import Counter
from typing import Any

import httpx

from tests.conftest import Stack, StackFactory
from tests.helpers import ledger, wait_for
from tests.sends import DirectRun, insert_campaign


def problem_paths(r: httpx.Response, status: int) -> list[str]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return [e["path"] for e in r.json().get("errors", [])]


def unique_phone() -> str:
    return f"+4477009{secrets.randbelow(10**5):05d}"


async def suppress(stack: Stack, channel: str, address: str) -> dict[str, Any]:
    r = await stack.call(
        "POST", "/suppressions", json={"tenantId": stack.tenant, "channel": channel, "address": address}
    )
    assert r.status_code in (200, 201), r.text
    body: dict[str, Any] = r.json()
    return body


# ---- the suppression list API --------------------------------------------------------------------------


async def test_suppression_list_api(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    body = {"tenantId": stack.tenant, "channel": "EMAIL", "address": " Ann@Example.COM ", "note": "complaint"}
    r = await stack.call("POST", "/suppressions", json=body)
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["id"].startswith("suppression_") and entry["address"] == "ann@example.com"
    assert (
        entry["note"] == "complaint"
        and entry["createdBy"] == "user_test"
        and entry["createdAt"].endswith("Z")
    )
    # The same address again (any case): 200 with the entry, no second one.
    r = await stack.call("POST", "/suppressions", json={**body, "address": "ANN@example.com", "note": None})
    assert r.status_code == 200 and r.json() == entry
    sms = await suppress(stack, "SMS", "+27821234567")

    r = await stack.call("GET", "/suppressions", params={"tenantId": stack.tenant})
    assert r.json()["meta"]["total"] == 2 and [e["id"] for e in r.json()["data"]] == [sms["id"], entry["id"]]
    r = await stack.call("GET", "/suppressions", params={"tenantId": stack.tenant, "channel": "SMS"})
    assert [e["id"] for e in r.json()["data"]] == [sms["id"]]
    params = {"tenantId": stack.tenant, "channel": "EMAIL", "address": "ann@EXAMPLE.com"}
    r = await stack.call("GET", "/suppressions", params=params)
    assert [e["id"] for e in r.json()["data"]] == [entry["id"]]
    assert (await stack.call("GET", f"/suppressions/{entry['id']}")).json() == entry

    bad: list[tuple[dict[str, Any], str]] = [
        ({**body, "address": "not an email"}, "$.address"),
        ({**body, "channel": "SMS", "address": "ann@example.com"}, "$.address"),
        ({**body, "channel": "SMS", "address": "+999123"}, "$.address"),
        ({**body, "channel": "PIGEON"}, "$.channel"),
        ({**body, "address": ""}, "$.address"),
        ({**body, "reason": "x"}, "$.reason"),
        ({k: v for k, v in body.items() if k != "tenantId"}, "$.tenantId"),
    ]
    for payload, where in bad:
        assert where in problem_paths(await stack.call("POST", "/suppressions", json=payload), 422), payload
    assert problem_paths(await stack.call("GET", "/suppressions", params={**params, "channel": None}), 422)
    bad_query = {**params, "address": "nope"}
    assert problem_paths(await stack.call("GET", "/suppressions", params=bad_query), 422) == ["query.address"]

    # Tenancy: another tenant's entries do not exist for it, and its tenant id is not granted.
    other = stack.other_tenant
    assert problem_paths(await stack.call("GET", f"/suppressions/{entry['id']}", other), 404) == []
    assert problem_paths(await stack.call("DELETE", f"/suppressions/{entry['id']}", other), 404) == []
    problem_paths(await stack.call("POST", "/suppressions", other, json=body), 403)
    problem_paths(await stack.call("GET", "/suppressions", other, params={"tenantId": stack.tenant}), 403)
    problem_paths(await stack.call("DELETE", "/suppressions", other, params=params), 403)
    problem_paths(await stack.api.get("/suppressions", params={"tenantId": stack.tenant}), 401)

    # Removal, by id or by address.
    assert (await stack.call("DELETE", f"/suppressions/{entry['id']}")).status_code == 204
    assert problem_paths(await stack.call("GET", f"/suppressions/{entry['id']}"), 404) == []
    sms_params = {"tenantId": stack.tenant, "channel": "SMS", "address": "+27821234567"}
    assert (await stack.call("DELETE", "/suppressions", params=sms_params)).status_code == 204
    assert problem_paths(await stack.call("DELETE", "/suppressions", params=sms_params), 404) == []
    r = await stack.call("GET", "/suppressions", params={"tenantId": stack.tenant})
    assert r.json()["meta"]["total"] == 0


async def test_unsubscribe_through_the_api(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    body = {"tenantId": stack.tenant, "externalId": "u-1", "email": "u@example.com", "phone": unique_phone()}
    customer = (await stack.call("POST", "/customers", json=body)).json()
    path = f"/customers/{customer['id']}/unsubscribe"
    r = await stack.call("POST", path, json={"channel": "SMS"})
    assert r.status_code == 200, r.text
    assert r.json()["smsUnsubscribed"] is True and r.json()["emailUnsubscribed"] is False
    assert r.json()["smsOptIn"] is True  # the opt-in is kept; the unsubscribe outranks it
    r = await stack.call("POST", path, json={})
    assert r.json()["smsUnsubscribed"] is True and r.json()["emailUnsubscribed"] is True
    # Opting in again does not undo an unsubscribe.
    r = await stack.call("POST", "/customers", json={**body, "emailOptIn": True})
    assert r.json()["emailUnsubscribed"] is True
    assert problem_paths(await stack.call("POST", path, json={"channel": "FAX"}), 422) == ["$.channel"]
    assert problem_paths(await stack.call("POST", path, stack.other_tenant, json={}), 404) == []
    assert problem_paths(await stack.call("POST", "/customers/customer_nope/unsubscribe", json={}), 404) == []


# ---- every reason, end to end ----------------------------------------------------------------------------


async def test_no_skipped_recipient_receives_anything(make_stack: StackFactory) -> None:
    """One recipient per reason, on EMAIL and SMS, through the real workflow: only the eligible one
    reaches the sinks, and every other (recipient, channel) is SKIPPED with its reason."""
    stack = await make_stack()
    tag = secrets.token_hex(4)

    def person(name: str, *, email: bool = True, phone: bool = True, **extra: Any) -> dict[str, Any]:
        return {
            "externalId": name,
            "firstName": name,
            "email": f"{name}-{tag}@example.com" if email else None,
            "phone": unique_phone() if phone else None,
            **extra,
        }

    people = [
        person("eligible"),
        person("noaddress", email=False, phone=False),
        person("noconsent", emailOptIn=False, smsOptIn=False),
        person("apiunsub"),
        person("linkunsub", phone=False),
        person("bounced", phone=False),
        person("suppressed"),
    ]
    r = await stack.call("POST", "/customers/import", json={"tenantId": stack.tenant, "customers": people})
    assert r.status_code == 200 and r.json()["created"] == len(people), r.text
    listed = (await stack.call("GET", "/customers", params={"tenantId": stack.tenant})).json()["data"]
    ids = {c["externalId"]: c["id"] for c in listed}
    by_name = {p["externalId"]: p for p in people}

    async def segment(*names: str) -> str:
        body = {
            "tenantId": stack.tenant,
            "name": "s",
            "type": "STATIC",
            "customerIds": [ids[n] for n in names],
        }
        return str((await stack.call("POST", "/segments", json=body)).json()["id"])

    email_t = (
        await stack.call(
            "POST",
            "/templates",
            json={
                "tenantId": stack.tenant,
                "name": "E",
                "channel": "EMAIL",
                "subject": "Hi {{ firstName }}",
                "html": "<p>Hi</p>",
            },
        )
    ).json()["id"]
    sms_t = (
        await stack.call(
            "POST", "/templates", json={"tenantId": stack.tenant, "name": "S", "channel": "SMS", "body": "Hi"}
        )
    ).json()["id"]

    async def send(segment_id: str) -> str:
        body = {
            "tenantId": stack.tenant,
            "name": "reasons",
            "type": "ONE_TIME",
            "segmentId": segment_id,
            "channels": ["EMAIL", "SMS"],
            "emailTemplateId": email_t,
            "smsTemplateId": sms_t,
        }
        campaign_id = str((await stack.call("POST", "/campaigns", json=body)).json()["id"])
        assert (await stack.call("POST", f"/campaigns/{campaign_id}/execute")).status_code == 200
        await wait_for(stack, campaign_id, "COMPLETED")
        return campaign_id

    # A first campaign earns an unsubscribe through the email's link and a hard bounce at SMTP.
    stack.smtp.refuse[by_name["bounced"]["email"]] = (550, "5.1.1 no such user")
    await send(await segment("linkunsub", "bounced"))
    [mail] = [m for m in stack.smtp.snapshot() if m.to == by_name["linkunsub"]["email"]]
    link = str(mail.message["List-Unsubscribe"]).strip("<>")
    r = await stack.api.post(
        link,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text
    assert (await stack.call("POST", f"/customers/{ids['apiunsub']}/unsubscribe", json={})).status_code == 200
    await suppress(stack, "EMAIL", by_name["suppressed"]["email"].upper())
    await suppress(stack, "SMS", by_name["suppressed"]["phone"])

    emails_before = Counter(m.to for m in stack.smtp.snapshot())
    sms_before = Counter(m.to for m in stack.sms.messages)
    campaign_id = await send(await segment(*ids))

    rows = await ledger(stack, campaign_id)
    names = {v: k for k, v in ids.items()}
    got = {(names[r["customerId"]], r["channel"]): (r["outcome"], r["reason"]) for r in rows}
    skipped = ("SKIPPED",)
    assert got == {
        ("eligible", "EMAIL"): ("SENT", None),
        ("eligible", "SMS"): ("SENT", None),
        ("noaddress", "EMAIL"): (*skipped, "NO_ADDRESS"),
        ("noaddress", "SMS"): (*skipped, "NO_ADDRESS"),
        ("noconsent", "EMAIL"): (*skipped, "NO_CONSENT"),
        ("noconsent", "SMS"): (*skipped, "NO_CONSENT"),
        ("apiunsub", "EMAIL"): (*skipped, "UNSUBSCRIBED"),
        ("apiunsub", "SMS"): (*skipped, "UNSUBSCRIBED"),
        ("linkunsub", "EMAIL"): (*skipped, "UNSUBSCRIBED"),
        ("linkunsub", "SMS"): (*skipped, "NO_ADDRESS"),
        ("bounced", "EMAIL"): (*skipped, "HARD_BOUNCED"),
        ("bounced", "SMS"): (*skipped, "NO_ADDRESS"),
        ("suppressed", "EMAIL"): (*skipped, "SUPPRESSED"),
        ("suppressed", "SMS"): (*skipped, "SUPPRESSED"),
    }
    campaign = (await stack.call("GET", f"/campaigns/{campaign_id}")).json()
    assert campaign["targetCount"] == len(people) and campaign["skippedCount"] == 12
    # The sinks: the eligible recipient got one email and one SMS; nobody else got anything new.
    emails_new = Counter(m.to for m in stack.smtp.snapshot()) - emails_before
    sms_new = Counter(m.to for m in stack.sms.messages) - sms_before
    assert emails_new == Counter({by_name["eligible"]["email"]: 1})
    assert sms_new == Counter({by_name["eligible"]["phone"]: 1})


# ---- at snapshot time, and again just before each message ---------------------------------------------


async def test_consent_is_applied_at_snapshot_and_again_before_each_message(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    tag = secrets.token_hex(4)
    people = [
        {"externalId": n, "email": f"{n}-{tag}@example.com", "phone": unique_phone()}
        for n in ("keep", "early", "late", "lifted")
    ]
    assert (
        await stack.call("POST", "/customers/import", json={"tenantId": stack.tenant, "customers": people})
    ).status_code == 200
    listed = (await stack.call("GET", "/customers", params={"tenantId": stack.tenant})).json()["data"]
    ids = {c["externalId"]: c["id"] for c in listed}
    addresses = {p["externalId"]: p for p in people}
    segment = await stack.call(
        "POST",
        "/segments",
        json={"tenantId": stack.tenant, "name": "s", "type": "DYNAMIC", "filter": {}},
    )
    email_t = await stack.call(
        "POST",
        "/templates",
        json={"tenantId": stack.tenant, "name": "E", "channel": "EMAIL", "subject": "s", "text": "t"},
    )
    sms_t = await stack.call(
        "POST", "/templates", json={"tenantId": stack.tenant, "name": "S", "channel": "SMS", "body": "b"}
    )
    campaign_id = await insert_campaign(
        stack,
        segment.json()["id"],
        email_template_id=email_t.json()["id"],
        sms_template_id=sms_t.json()["id"],
    )
    # Before the snapshot: "early" is suppressed on both channels, "lifted" on SMS.
    early_email = await suppress(stack, "EMAIL", addresses["early"]["email"])
    await suppress(stack, "SMS", addresses["early"]["phone"])
    lifted = await suppress(stack, "SMS", addresses["lifted"]["phone"])

    run = DirectRun(stack, campaign_id)
    try:
        snapshot = await run.snapshot()
        assert snapshot.target_count == 4
        # The snapshot already decided: the skips are in the ledger before anything is sent.
        assert await run.ledger() == {
            (ids["early"], "EMAIL"): ("SKIPPED", "SUPPRESSED"),
            (ids["early"], "SMS"): ("SKIPPED", "SUPPRESSED"),
            (ids["lifted"], "SMS"): ("SKIPPED", "SUPPRESSED"),
        }
        # Between the snapshot and the send: "late" unsubscribes from email and is suppressed on
        # SMS; the suppressions taken off the list do not undo what the snapshot decided.
        path = f"/customers/{ids['late']}/unsubscribe"
        assert (await stack.call("POST", path, json={"channel": "EMAIL"})).status_code == 200
        await suppress(stack, "SMS", addresses["late"]["phone"])
        for entry in (early_email, lifted):
            assert (await stack.call("DELETE", f"/suppressions/{entry['id']}")).status_code == 204
        results = await run.send()
    finally:
        await run.close()

    assert await run.ledger() == {
        (ids["keep"], "EMAIL"): ("SENT", None),
        (ids["keep"], "SMS"): ("SENT", None),
        (ids["early"], "EMAIL"): ("SKIPPED", "SUPPRESSED"),
        (ids["early"], "SMS"): ("SKIPPED", "SUPPRESSED"),
        (ids["late"], "EMAIL"): ("SKIPPED", "UNSUBSCRIBED"),
        (ids["late"], "SMS"): ("SKIPPED", "SUPPRESSED"),
        (ids["lifted"], "EMAIL"): ("SENT", None),
        (ids["lifted"], "SMS"): ("SKIPPED", "SUPPRESSED"),
    }
    # Skips decided at snapshot time are counted by the send pages like the others.
    assert sum(r.counts.skipped for r in results) == 5 and sum(r.counts.sent for r in results) == 3
    received_email = {m.to for m in stack.smtp.snapshot()}
    received_sms = {m.to for m in stack.sms.messages}
    assert {p["email"] for p in people} & received_email == {
        addresses[n]["email"] for n in ("keep", "lifted")
    }
    assert {p["phone"] for p in people} & received_sms == {addresses["keep"]["phone"]}
