"""Issue 16 acceptance: two tenants, each with its own sender identity and SMTP account, send at the
same time; each relay (an SMTP sink of its own) receives only its tenant's mail, From and Reply-To
are the identity's, and every message's DKIM signature verifies (dkimpy's verifier) against the
TXT record the API gave. An identity whose domain was never verified sends nothing: the campaign
pauses saying why, and resumes once the domain is verified.
"""

import asyncio
from collections.abc import AsyncIterator
from email import policy as email_policy
from typing import Any

import dkim  # type: ignore[import-untyped]
import pytest

from devstack.sinks import CapturedEmail, SmtpSink
from tests.conftest import Stack, StackFactory
from tests.factories import Audience, make_audience, make_templates
from tests.test_tenant_workspace import DnsStub, as_admin


@pytest.fixture(scope="module")
async def relays() -> AsyncIterator[tuple[SmtpSink, SmtpSink]]:
    a, b = SmtpSink().start(), SmtpSink().start()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture(scope="module")
async def dns() -> AsyncIterator[DnsStub]:
    stub = await DnsStub().start()
    yield stub
    stub.stop()


async def workspace(
    stack: Stack, tenant: str, relay: SmtpSink, domain: str, dns: DnsStub | None, default: bool = True
) -> dict[str, Any]:
    """An SMTP account on `relay` and an identity on `domain` (verified when `dns` is given; the
    tenant's default identity when `default`)."""
    account = {
        "tenantId": tenant,
        "name": f"{domain} relay",
        "kind": "SMTP",
        "smtp": {"host": "127.0.0.1", "port": relay.port, "starttls": False},
    }
    r = await as_admin(stack, "POST", "/provider-accounts", tenant=tenant, json=account)
    assert r.status_code == 201, r.text
    identity = {
        "tenantId": tenant,
        "name": domain,
        "fromName": f"News of {domain}",
        "fromAddress": f"news@{domain}",
        "replyTo": f"office@{domain}",
        "emailAccountId": r.json()["id"],
        "dkim": {"selector": "s2026", "generate": True},
    }
    r = await as_admin(stack, "POST", "/sender-identities", tenant=tenant, json=identity)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    if dns is not None:
        await publish_and_verify(stack, tenant, created, dns)
    if not default:
        return created
    r = await as_admin(
        stack,
        "PATCH",
        f"/tenants/{tenant}/settings",
        tenant=tenant,
        json={"defaultSenderIdentityId": created["id"]},
    )
    assert r.status_code == 200, r.text
    return created


async def publish_and_verify(stack: Stack, tenant: str, identity: dict[str, Any], dns: DnsStub) -> None:
    record = identity["dkim"]["dnsRecord"]
    dns.publish(record["name"], record["value"])
    r = await as_admin(stack, "POST", f"/sender-identities/{identity['id']}/verify", tenant=tenant)
    assert r.status_code == 200 and r.json()["verified"] is True, r.text


async def create(stack: Stack, tenant: str, audience: Audience, **extra: Any) -> str:
    """A ONE_TIME email campaign to `audience` (`extra`: more fields, e.g. `senderIdentityId`)."""
    email_t, _ = await make_templates(stack.engine, tenant)
    body = {
        "tenantId": tenant,
        "name": "Club news",
        "type": "ONE_TIME",
        "segmentId": audience.segment_id,
        "channels": ["EMAIL"],
        "emailTemplateId": email_t,
        **extra,
    }
    r = await stack.call("POST", "/campaigns", tenant=tenant, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["senderIdentityId"] == extra.get("senderIdentityId")
    return str(r.json()["id"])


async def start_campaign(stack: Stack, tenant: str, audience: Audience, **extra: Any) -> str:
    campaign_id = await create(stack, tenant, audience, **extra)
    r = await stack.call("POST", f"/campaigns/{campaign_id}/execute", tenant=tenant)
    assert r.status_code == 200, r.text
    return campaign_id


async def settled(stack: Stack, tenant: str, campaign_id: str, *statuses: str) -> dict[str, Any]:
    for _ in range(1200):
        r = await stack.call("GET", f"/campaigns/{campaign_id}", tenant=tenant)
        body: dict[str, Any] = r.json()
        if body["status"] in statuses:
            if body["status"] == "COMPLETED":
                await stack.client.get_workflow_handle(f"campaign-{campaign_id}").result()
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"campaign {campaign_id} stuck: {body}")


def dkim_verifies(message: CapturedEmail, record: dict[str, str]) -> bool:
    """dkimpy's verifier on the received bytes, with DNS answering the record the API gave."""
    raw = message.message.as_bytes(policy=email_policy.SMTP.clone(refold_source="none"))  # as received

    def txt(name: bytes, timeout: int = 5) -> bytes | None:
        return record["value"].encode() if name.decode().rstrip(".") == record["name"] else None

    return bool(dkim.verify(raw, dnsfunc=txt))


async def test_two_tenants_send_through_their_own_relays_signed_by_their_own_keys(
    make_stack: StackFactory, relays: tuple[SmtpSink, SmtpSink], dns: DnsStub
) -> None:
    stack = await make_stack(dns_nameservers=f"127.0.0.1:{dns.port}")
    tenants = (stack.tenant, stack.other_tenant)
    domains = (f"{stack.tenant.replace('_', '-')}.example", f"{stack.other_tenant.replace('_', '-')}.example")
    # Tenant A sends as its default identity, tenant B as the identity its campaign names.
    identities = [
        await workspace(stack, tenants[0], relays[0], domains[0], dns),
        await workspace(stack, tenants[1], relays[1], domains[1], dns, default=False),
    ]
    audiences = [await make_audience(stack.engine, t, 20) for t in tenants]

    campaigns = await asyncio.gather(
        start_campaign(stack, tenants[0], audiences[0]),
        start_campaign(stack, tenants[1], audiences[1], senderIdentityId=identities[1]["id"]),
    )
    await asyncio.gather(
        *(settled(stack, t, c, "COMPLETED") for t, c in zip(tenants, campaigns, strict=True))
    )

    for relay, audience, identity, other in zip(
        relays, audiences, identities, reversed(audiences), strict=True
    ):
        got = relay.counts(audience.emails() | other.emails())
        assert set(got) == audience.emails() and set(got.values()) == {1}, got  # only its own tenant's
        record = identity["dkim"]["dnsRecord"]
        mine = [m for m in relay.snapshot() if m.to in audience.emails()]
        assert len(mine) == len(audience.emails())
        for m in mine:
            sender = m.message["From"].addresses[0]
            assert (sender.display_name, sender.addr_spec) == (identity["fromName"], identity["fromAddress"])
            assert m.message["Reply-To"] == identity["replyTo"]
            assert m.mail_from == identity["fromAddress"]
            signature = dkim.util.parse_tag_value(m.message["DKIM-Signature"].encode())
            assert (
                signature[b"d"].decode() == identity["fromAddress"].split("@")[1]
                and signature[b"s"] == b"s2026"
            )
            assert b"list-unsubscribe" in signature[b"h"]
            assert dkim_verifies(m, record), m.message["DKIM-Signature"]
    # The other tenant's published key does not verify this tenant's mail: the keys are their own.
    first = next(m for m in relays[0].snapshot() if m.to in audiences[0].emails())
    assert not dkim_verifies(
        first, {**identities[1]["dkim"]["dnsRecord"], "name": identities[0]["dkim"]["dnsRecord"]["name"]}
    )
    # A changed byte breaks the signature (the check can fail).
    tampered = first.message
    tampered.replace_header("Subject", "Changed on the way")
    assert not dkim_verifies(first, identities[0]["dkim"]["dnsRecord"])
    # Nothing of either went through the platform's relay.
    assert stack.smtp.counts(audiences[0].emails() | audiences[1].emails()) == {}

    # A test send goes out as the campaign would: tenant B's identity, relay and key.
    qa = "qa@review.example"
    r = await stack.call(
        "POST", f"/campaigns/{campaigns[1]}/test-send", tenant=tenants[1], json={"emails": [qa]}
    )
    assert r.status_code == 200 and r.json()["results"][0]["sent"], r.text
    (test,) = [m for m in relays[1].snapshot() if m.to == qa]
    assert test.message["From"].addresses[0].addr_spec == identities[1]["fromAddress"]
    assert test.message["X-Campaigns-Test"] == "true"
    assert dkim_verifies(test, identities[1]["dkim"]["dnsRecord"])
    assert relays[0].counts({qa}) == {} and stack.smtp.counts({qa}) == {}


async def test_an_unverified_domain_sends_nothing_until_verified(
    make_stack: StackFactory, relays: tuple[SmtpSink, SmtpSink], dns: DnsStub
) -> None:
    stack = await make_stack(dns_nameservers=f"127.0.0.1:{dns.port}")
    domain = f"{stack.tenant.replace('_', '-')}.example"
    identity = await workspace(stack, stack.tenant, relays[0], domain, dns=None)
    audience = await make_audience(stack.engine, stack.tenant, 5)
    # Naming it on a campaign: 409 until verified; another tenant's or an unknown one: 422.
    body = {"tenantId": stack.tenant, "name": "x", "channels": ["EMAIL"], "senderIdentityId": identity["id"]}
    r = await stack.call("POST", "/campaigns", json=body)
    assert r.status_code == 409 and "not verified" in r.json()["detail"], r.text
    for unknown in ("sender_doesnotexist", identity["id"]):
        r = await stack.call(
            "POST",
            "/campaigns",
            tenant=stack.other_tenant,
            json={**body, "tenantId": stack.other_tenant, "senderIdentityId": unknown},
        )
        assert r.status_code == 422, r.text
    # As the tenant's default, it pauses the campaign when sending starts, saying why.
    campaign_id = await start_campaign(stack, stack.tenant, audience)
    paused = await settled(stack, stack.tenant, campaign_id, "PAUSED", "COMPLETED")
    assert paused["status"] == "PAUSED" and "not verified" in paused["lastError"], paused
    assert relays[0].counts(audience.emails()) == {} and stack.smtp.counts(audience.emails()) == {}

    await publish_and_verify(stack, stack.tenant, identity, dns)
    r = await stack.call("PATCH", f"/campaigns/{campaign_id}", json={"senderIdentityId": identity["id"]})
    assert r.status_code == 200 and r.json()["senderIdentityId"] == identity["id"], r.text
    r = await stack.call("POST", f"/campaigns/{campaign_id}/resume")
    assert r.status_code == 200, r.text
    await settled(stack, stack.tenant, campaign_id, "COMPLETED")
    got = relays[0].counts(audience.emails())
    assert set(got) == audience.emails() and set(got.values()) == {1}
    for m in relays[0].snapshot():
        if m.to in audience.emails():
            assert dkim_verifies(m, identity["dkim"]["dnsRecord"])
