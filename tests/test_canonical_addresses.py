"""One canonical address everywhere: no spelling of an address slips past a consent rule.

A rule recorded under one spelling of an address (the suppression list, an unsubscribe, a hard
bounce) must hold for every other spelling that reaches the same mailbox or number, because the
mail client reads the address out of whatever is stored (`<ada@example.com>` is delivered to
ada@example.com). So every door stores the canonical form or refuses the value with a 422, and
the sends compare canonical forms. Each end-to-end test here runs the real workflow and checks
what the SMTP and SMS sinks received and what the ledger says.
"""

import csv
import io
import secrets
import uuid
from collections import Counter
from collections.abc import Iterator
from email.utils import parseaddr
from typing import Any

import httpx
import psycopg
import pytest
from alembic import command
from sqlalchemy import text

from activities.send.gates import skip_reason
from api.routes.webhooks import SIGNATURE_HEADER, signature
from core.addresses import _validated, canonical_email, canonical_phone
from core.enums import SkipReason
from db.audience import CONSENT_COLUMNS
from db.engine import make_engine
from db.migrate import alembic_config, upgrade
from tests.conftest import Stack, StackFactory
from tests.helpers import ledger, wait_for

# ---- the canonical form ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("ada@example.com", "ada@example.com"),
        ("ADA@Example.COM", "ada@example.com"),
        ("  Ada.Lovelace+News@EXAMPLE.co.uk \t", "ada.lovelace+news@example.co.uk"),
        ("ÄDA@BÜCHER.de", "äda@xn--bcher-kva.de"),
        ("ada@BÜCHER.de", "ada@xn--bcher-kva.de"),
        ("ada@xn--bcher-kva.de", "ada@xn--bcher-kva.de"),
    ],
)
def test_canonical_email(written: str, stored: str) -> None:
    assert canonical_email(written) == stored
    assert canonical_email(stored) == stored  # canonical forms are fixed points


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("Ada <ada@example.com>", "without a display name or angle brackets"),
        ("<ada@example.com>", "without a display name or angle brackets"),
        ('"Ada"<ada@example.com>', "without a display name or angle brackets"),
        ("ada@example.com (Ada)", "without a (comment)"),
        ("ada@example.com(Ada)", "without a (comment)"),
        ("ada @example.com", "must not contain whitespace"),
        ("ada@example.com, bob@example.com", "must not contain whitespace"),
        ("ada@example.com,bob@example.com", "not a valid email address"),
        ('"ada"@example.com', "not a valid email address: Quoting the part before the @-sign"),
        ("ada@[127.0.0.1]", "not a valid email address: A bracketed IP address"),
        ("ada@example", "not a valid email address"),
        ("ada..x@example.com", "not a valid email address"),
        ("ada@example.com.", "not a valid email address"),
        ("   ", "email is empty"),
    ],
)
def test_anything_but_a_bare_address_is_refused(written: str, reason: str) -> None:
    with pytest.raises(ValueError) as refused:
        canonical_email(written)
    assert reason in str(refused.value)


def _generated_addresses() -> Iterator[str]:
    locals_ = ["a", "Ada.Lovelace", "x+y", "o'neil", "a.b.c", "a..b", ".a", "a.", "é", "a" * 64, "a" * 65]
    domains = ["example.com", "EXAMPLE.org", "b.c", "bücher.de", "x.test", "x.123", "-x.com", "x-.com"]
    domains += ["a" * 63 + ".com", "a" * 64 + ".com", "xn--bcher-kva.de", "xn--zz.com", "localhost", ""]
    for local in locals_:
        for domain in domains:
            yield f"{local}@{domain}"
    yield "a@" + ".".join(["b" * 60] * 4) + ".com"  # too long as a whole, every part valid


def test_the_per_domain_shortcut_decides_as_the_library_does() -> None:
    """Plain local parts skip the library's full check (its domain check, cached per domain, is
    what costs); the verdict must be the library's, for every address."""
    for address in _generated_addresses():
        try:
            expected: str | None = _validated(address)
        except ValueError:
            expected = None
        try:
            got: str | None = canonical_email(address)
        except ValueError:
            got = None
        assert got == expected, address


def test_canonical_phone() -> None:
    assert canonical_phone(" +27821234567 ") == "+27821234567"
    # A national trunk prefix written after the country code is the same number.
    assert canonical_phone("+4407700900123") == canonical_phone("+447700900123") == "+447700900123"
    for bad in ("+27 82 123 4567", "0821234567", "+999123456", "+2782"):
        with pytest.raises(ValueError):
            canonical_phone(bad)


# ---- the doors --------------------------------------------------------------------------------------------


def _problems(r: httpx.Response, status: int = 422) -> dict[str, str]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return {e["path"]: e["message"] for e in r.json().get("errors", [])}


async def test_every_door_refuses_display_and_comment_forms(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    tag = secrets.token_hex(4)
    bare = f"ada-{tag}@example.com"
    display, comment = f"Ada<{bare}>", f"{bare}(Ada)"

    for form, why in ((display, "display name"), (comment, "(comment)")):
        body = {"tenantId": stack.tenant, "externalId": "c-1", "email": form}
        problems = _problems(await stack.call("POST", "/customers", json=body))
        assert list(problems) == ["$.email"] and why in problems["$.email"]
        problems = _problems(
            await stack.call(
                "POST", "/suppressions", json={"tenantId": stack.tenant, "channel": "EMAIL", "address": form}
            )
        )
        assert list(problems) == ["$.address"] and why in problems["$.address"]
        params = {"tenantId": stack.tenant, "channel": "EMAIL", "address": form}
        assert list(_problems(await stack.call("GET", "/suppressions", params=params))) == ["query.address"]
        assert list(_problems(await stack.call("DELETE", "/suppressions", params=params))) == [
            "query.address"
        ]
        # A lookup by a value that is not an address finds nobody (no stored email is one).
        r = await stack.call("GET", "/customers", params={"tenantId": stack.tenant, "email": form})
        assert r.status_code == 200 and r.json()["meta"]["total"] == 0, r.text

    # The import: each bad row is reported with its path and skipped, the good ones stored canonical.
    rows = [
        {"externalId": "j-1", "email": display},
        {"externalId": "j-2", "email": comment},
        {"externalId": "j-3", "email": f"  ADA-{tag}@Example.COM "},
        {"externalId": "j-4", "phone": "+4407700900123"},
    ]
    r = await stack.call("POST", "/customers/import", json={"tenantId": stack.tenant, "customers": rows})
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["created"], report["rejected"]) == (2, 2)
    assert [(e["row"], e["externalId"], e["path"]) for e in report["errors"]] == [
        (1, "j-1", "$.customers[0].email"),
        (2, "j-2", "$.customers[1].email"),
    ]
    assert "display name" in report["errors"][0]["message"] and "(comment)" in report["errors"][1]["message"]

    buffer = io.StringIO()
    csv.writer(buffer).writerows(
        [["externalId", "email"], ["v-1", display], ["v-2", comment], ["v-3", f"Ada-{tag}@EXAMPLE.com"]]
    )
    r = await stack.api.post(
        "/customers/import",
        params={"tenantId": stack.tenant},
        content=buffer.getvalue().encode(),
        headers={**stack.headers(), "Content-Type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert [(e["row"], e["path"]) for e in r.json()["errors"]] == [(1, "row 1.email"), (2, "row 2.email")]

    listed = (await stack.call("GET", "/customers", params={"tenantId": stack.tenant, "take": 100})).json()
    assert sorted((c["externalId"], c["email"], c["phone"]) for c in listed["data"]) == [
        ("j-3", bare, None),
        ("j-4", None, "+447700900123"),
        ("v-3", bare, None),
    ]
    # A lookup by any spelling finds the canonical address.
    params = {"tenantId": stack.tenant, "email": f"ADA-{tag}@Example.com"}
    found = (await stack.call("GET", "/customers", params=params)).json()["data"]
    assert sorted(c["externalId"] for c in found) == ["j-3", "v-3"]


async def test_suppression_entries_match_any_spelling(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    tag = secrets.token_hex(4)
    body = {"tenantId": stack.tenant, "channel": "EMAIL", "address": f"ADA-{tag}@Example.COM"}
    r = await stack.call("POST", "/suppressions", json=body)
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["address"] == f"ada-{tag}@example.com"
    r = await stack.call("POST", "/suppressions", json={**body, "address": f" ada-{tag}@EXAMPLE.com "})
    assert r.status_code == 200 and r.json()["id"] == entry["id"]

    phone = f"+4477009{secrets.randbelow(10**5):05d}"
    trunk = phone.replace("+44", "+440")
    sms = await stack.call("POST", "/suppressions", json={**body, "channel": "SMS", "address": trunk})
    assert sms.status_code == 201 and sms.json()["address"] == phone, sms.text
    r = await stack.call("POST", "/suppressions", json={**body, "channel": "SMS", "address": phone})
    assert r.status_code == 200 and r.json()["id"] == sms.json()["id"]

    params = {"tenantId": stack.tenant, "channel": "EMAIL", "address": f"Ada-{tag}@example.COM"}
    assert [e["id"] for e in (await stack.call("GET", "/suppressions", params=params)).json()["data"]] == [
        entry["id"]
    ]
    assert (await stack.call("DELETE", "/suppressions", params=params)).status_code == 204
    sms_params = {"tenantId": stack.tenant, "channel": "SMS", "address": trunk}
    assert (await stack.call("DELETE", "/suppressions", params=sms_params)).status_code == 204
    r = await stack.call("GET", "/suppressions", params={"tenantId": stack.tenant})
    assert r.json()["meta"]["total"] == 0


# ---- end to end: nothing reaches a suppressed, unsubscribed or bounced address ----------------------------


async def _templates(stack: Stack) -> tuple[str, str]:
    email = {"tenantId": stack.tenant, "name": "E", "channel": "EMAIL", "subject": "Hi", "text": "Hello"}
    sms = {"tenantId": stack.tenant, "name": "S", "channel": "SMS", "body": "Hello"}
    email_r = await stack.call("POST", "/templates", json=email)
    sms_r = await stack.call("POST", "/templates", json=sms)
    assert email_r.status_code == 201 and sms_r.status_code == 201, (email_r.text, sms_r.text)
    return email_r.json()["id"], sms_r.json()["id"]


async def _send(stack: Stack, templates: tuple[str, str], customer_ids: list[str]) -> str:
    segment = await stack.call(
        "POST",
        "/segments",
        json={"tenantId": stack.tenant, "name": "s", "type": "STATIC", "customerIds": customer_ids},
    )
    assert segment.status_code == 201, segment.text
    body = {
        "tenantId": stack.tenant,
        "name": "canonical",
        "type": "ONE_TIME",
        "segmentId": segment.json()["id"],
        "channels": ["EMAIL", "SMS"],
        "emailTemplateId": templates[0],
        "smsTemplateId": templates[1],
    }
    r = await stack.call("POST", "/campaigns", json=body)
    assert r.status_code == 201, r.text
    campaign_id = str(r.json()["id"])
    assert (await stack.call("POST", f"/campaigns/{campaign_id}/execute")).status_code == 200
    await wait_for(stack, campaign_id, "COMPLETED")
    return campaign_id


async def _outcomes(stack: Stack, campaign_id: str) -> dict[tuple[str, str], tuple[str, str | None]]:
    return {
        (r["customerId"], r["channel"]): (r["outcome"], r["reason"]) for r in await ledger(stack, campaign_id)
    }


def _received(stack: Stack, emails: set[str], phones: set[str]) -> Counter[str]:
    """Messages the sinks hold for these canonical addresses, however the recipient was written
    on the way out (`To: ADA@Example.com` or `<ada@example.com>` count as ada@example.com)."""
    got: Counter[str] = Counter()
    for to, count in list(stack.smtp.by_to.items()):
        address = parseaddr(to)[1].lower()
        if address in emails:
            got[address] += count
    for message in list(stack.sms.messages):
        try:
            number = canonical_phone(message.to)
        except ValueError:
            continue
        if number in phones:
            got[number] += 1
    return got


async def _upsert(stack: Stack, external_id: str, **fields: Any) -> httpx.Response:
    return await stack.call(
        "POST", "/customers", json={"tenantId": stack.tenant, "externalId": external_id, **fields}
    )


async def test_a_suppressed_address_gets_nothing_however_it_is_written(make_stack: StackFactory) -> None:
    stack = await make_stack()
    tag = secrets.token_hex(4)
    bare = f"ada-{tag}@example.com"
    phone = f"+4477009{secrets.randbelow(10**5):05d}"
    control = (f"bob-{tag}@example.com", f"+4477008{secrets.randbelow(10**5):05d}")
    await stack.call(
        "POST",
        "/suppressions",
        json={"tenantId": stack.tenant, "channel": "EMAIL", "address": f"ADA-{tag}@Example.COM"},
    )
    await stack.call(
        "POST",
        "/suppressions",
        json={"tenantId": stack.tenant, "channel": "SMS", "address": phone.replace("+44", "+440")},
    )
    # Every spelling a tenant might send; the forms a mail client reads around are refused.
    spellings = [
        bare,
        bare.upper(),
        f" {bare} ",
        f"Ada-{tag}@EXAMPLE.com",
        f"<{bare}>",
        f"Ada<{bare}>",
        f"{bare}(Ada)",
    ]
    answers: dict[str, int] = {}
    ids: list[str] = []
    for i, spelling in enumerate(spellings):
        r = await _upsert(stack, f"s-{i}", email=spelling, phone=phone if i == 0 else None)
        answers[spelling] = r.status_code
        if r.status_code in (200, 201):
            ids.append(r.json()["id"])
    r = await _upsert(stack, "control", email=control[0], phone=control[1])
    control_id = r.json()["id"]
    before = _received(stack, {bare, control[0]}, {phone, control[1]})

    campaign_id = await _send(stack, await _templates(stack), [*ids, control_id])

    received = _received(stack, {bare, control[0]}, {phone, control[1]})
    received.subtract(before)
    assert +received == {control[0]: 1, control[1]: 1}
    outcomes = await _outcomes(stack, campaign_id)
    assert {k: v for k, v in outcomes.items() if k[0] != control_id} == {
        **{(i, "EMAIL"): ("SKIPPED", "SUPPRESSED") for i in ids},
        **{(i, "SMS"): ("SKIPPED", "NO_ADDRESS") for i in ids[1:]},
        (ids[0], "SMS"): ("SKIPPED", "SUPPRESSED"),
    }
    assert answers == {
        bare: 201,
        bare.upper(): 201,
        f" {bare} ": 201,
        f"Ada-{tag}@EXAMPLE.com": 201,
        f"<{bare}>": 422,
        f"Ada<{bare}>": 422,
        f"{bare}(Ada)": 422,
    }
    async with stack.engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT DISTINCT email FROM customers WHERE id = ANY(:ids)"), {"ids": ids}
            )
        ).scalars()
        assert list(stored) == [bare]


async def test_unsubscribes_and_hard_bounces_hold_for_every_spelling(make_stack: StackFactory) -> None:
    """An unsubscribe, a hard bounce at SMTP and a HARD bounce webhook, each recorded on one
    customer, stop every other customer of the tenant holding that address in another spelling."""
    stack = await make_stack()
    tag = secrets.token_hex(4)
    ann, cy, eve, dan = (f"{n}-{tag}@example.com" for n in ("ann", "cy", "eve", "dan"))
    ann_phone = f"+4477007{secrets.randbelow(10**5):05d}"
    first = {
        "ann": await _upsert(stack, "ann-1", email=ann, phone=ann_phone),
        "cy": await _upsert(stack, "cy-1", email=cy),
        "eve": await _upsert(stack, "eve-1", email=eve),
    }
    second = {
        "ann": await _upsert(stack, "ann-2", email=ann.upper(), phone=ann_phone.replace("+44", "+440")),
        "cy": await _upsert(stack, "cy-2", email=f"Cy-{tag}@Example.com"),
        "eve": await _upsert(stack, "eve-2", email=f"EVE-{tag}@example.COM"),
        "dan": await _upsert(stack, "dan-2", email=dan),
    }
    assert {r.status_code for r in (*first.values(), *second.values())} == {201}, [
        r.text for r in (*first.values(), *second.values())
    ]
    first_ids = {k: r.json()["id"] for k, r in first.items()}
    second_ids = {k: r.json()["id"] for k, r in second.items()}
    templates = await _templates(stack)

    stack.smtp.refuse[cy] = (550, "5.1.1 no such user")
    campaign_1 = await _send(stack, templates, list(first_ids.values()))
    outcomes = await _outcomes(stack, campaign_1)
    assert outcomes[(first_ids["cy"], "EMAIL")][0] == "BOUNCED"
    # ann unsubscribes from everything through the API; eve's message bounces HARD by webhook.
    r = await stack.call("POST", f"/customers/{first_ids['ann']}/unsubscribe", json={})
    assert r.status_code == 200, r.text
    [eve_delivery] = [
        r
        for r in await ledger(stack, campaign_1)
        if r["customerId"] == first_ids["eve"] and r["channel"] == "EMAIL"
    ]
    assert eve_delivery["outcome"] == "SENT"
    event = {"id": f"ev-{tag}", "type": "BOUNCED", "providerMessageId": eve_delivery["providerMessageId"]}
    body = httpx.Request("POST", "/", json={"events": [event]}).read()
    r = await stack.api.post(
        "/webhooks/email",
        content=body,
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(stack.settings.webhook_secret, body),
        },
    )
    assert r.status_code == 200 and r.json()["recorded"] == 1, r.text
    before = _received(stack, {ann, cy, eve, dan}, {ann_phone})

    campaign_2 = await _send(stack, templates, list(second_ids.values()))

    received = _received(stack, {ann, cy, eve, dan}, {ann_phone})
    received.subtract(before)
    assert +received == {dan: 1}
    assert await _outcomes(stack, campaign_2) == {
        (second_ids["ann"], "EMAIL"): ("SKIPPED", "UNSUBSCRIBED"),
        (second_ids["ann"], "SMS"): ("SKIPPED", "UNSUBSCRIBED"),
        (second_ids["cy"], "EMAIL"): ("SKIPPED", "HARD_BOUNCED"),
        (second_ids["cy"], "SMS"): ("SKIPPED", "NO_ADDRESS"),
        (second_ids["eve"], "EMAIL"): ("SKIPPED", "HARD_BOUNCED"),
        (second_ids["eve"], "SMS"): ("SKIPPED", "NO_ADDRESS"),
        (second_ids["dan"], "EMAIL"): ("SENT", None),
        (second_ids["dan"], "SMS"): ("SKIPPED", "NO_ADDRESS"),
    }


# ---- the migration ----------------------------------------------------------------------------------------


def _fresh_database(database_url: str) -> tuple[str, str]:
    """(admin URL, URL of a new empty database on the same server)."""
    base, _, query = database_url.partition("?")
    name = f"campaigns_migrate_{uuid.uuid4().hex[:8]}"
    admin = base.rsplit("/", 1)[0] + "/postgres" + ("?" + query if query else "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin, base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


async def test_migration_rewrites_old_addresses_and_suppression_then_applies(database_url: str) -> None:
    admin, url = _fresh_database(database_url)
    try:
        command.upgrade(alembic_config(url), "0004")
        customers = {
            "display": "Ada <ADA@Example.com>",
            "comment": " ada@example.com (Ada) ",
            "upper": "ADA@EXAMPLE.COM",
            "brackets": "<bob@example.com>",
            "unicode": "Zoë@BÜCHER.de",
            "broken": "Ada <ada@example.com",
            "two": "ada@example.com bob@example.com",
            "fine": "carl@example.com",
        }
        with psycopg.connect(url, autocommit=True) as conn:
            for key, email in customers.items():
                conn.execute(
                    "INSERT INTO customers (id, tenant_id, external_id, email, phone)"
                    " VALUES (%s, 't1', %s, %s, %s)",
                    (f"customer_{key}", key, email, "+4407700900123" if key == "fine" else None),
                )
            conn.execute(
                "INSERT INTO customers (id, tenant_id, external_id, email)"
                " VALUES ('customer_other', 't2', 'o', 'ADA@example.com')"
            )
            suppressions = [
                ("s1", "t1", "EMAIL", "ada@example.com", "2026-01-01"),
                ("s2", "t1", "EMAIL", "Ada <ada@example.com>", "2026-01-02"),  # merged into s1
                ("s3", "t1", "EMAIL", " BOB@example.com ", "2026-01-03"),
                ("s4", "t1", "EMAIL", "zoë@bücher.de", "2026-01-04"),
                ("s5", "t1", "SMS", "+4407700900123", "2026-01-05"),
                ("s6", "t1", "SMS", "+447700900123", "2026-01-06"),  # merged into s5
            ]
            for row in suppressions:
                conn.execute(
                    "INSERT INTO suppressions (id, tenant_id, channel, address, created_at)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    row,
                )

        upgrade(url)

        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text(f"SELECT c.id, {CONSENT_COLUMNS} FROM customers c ORDER BY c.id")
                )
                got = {r.id: (r.email, r.phone, skip_reason(r._mapping, "EMAIL")) for r in rows}
                entries = await conn.execute(
                    text("SELECT id, channel, address FROM suppressions ORDER BY id")
                )
                kept = [tuple(e) for e in entries]
        finally:
            await engine.dispose()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.partition("?")[0].rsplit("/", 1)[1]}" WITH (FORCE)')

    suppressed = SkipReason.SUPPRESSED
    assert got == {
        "customer_display": ("ada@example.com", None, suppressed),
        "customer_comment": ("ada@example.com", None, suppressed),
        "customer_upper": ("ada@example.com", None, suppressed),
        "customer_brackets": ("bob@example.com", None, suppressed),
        "customer_unicode": ("zoë@xn--bcher-kva.de", None, suppressed),
        "customer_broken": (None, None, SkipReason.NO_ADDRESS),
        "customer_two": (None, None, SkipReason.NO_ADDRESS),
        "customer_fine": ("carl@example.com", "+447700900123", None),
        # Another tenant's customer: the address is canonical, but t1's list is not t2's.
        "customer_other": ("ada@example.com", None, None),
    }
    assert kept == [
        ("s1", "EMAIL", "ada@example.com"),
        ("s3", "EMAIL", "bob@example.com"),
        ("s4", "EMAIL", "zoë@xn--bcher-kva.de"),
        ("s5", "SMS", "+447700900123"),
    ]
