"""Tenant workspace at the API (docs/tenants-and-providers.md): sender identities with DKIM keys
and their DNS verification, provider accounts with sealed credentials, tenant settings, the
`admin` role and tenant isolation (provider accounts: test_tenant_workspace_accounts.py). DNS is a
real DNS server on 127.0.0.1 (`DnsStub`, dnspython
on the wire), which the API's resolver is pointed at through `CAMPAIGNS_DNS_NAMESERVERS`.
"""

import asyncio
from typing import Any, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import text

from api.auth import issue_token
from core.secrets import unseal
from providers.dkim import load_key, public_b64
from tests.conftest import Stack, StackFactory


class DnsStub(asyncio.DatagramProtocol):
    """An authoritative DNS server for TXT records only, on a UDP port of 127.0.0.1."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.queries: list[str] = []
        self._transport: asyncio.DatagramTransport | None = None
        self.port = 0

    async def start(self) -> "DnsStub":
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]

    def publish(self, name: str, value: str) -> None:
        self.records[name.lower()] = [value]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        self.queries.append(name)
        values = self.records.get(name)
        if values is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT:
            rrset = response.find_rrset(
                response.answer, question.name, dns.rdataclass.IN, dns.rdatatype.TXT, create=True
            )
            for value in values:  # a TXT string holds 255 bytes: longer values are split
                chunks = [value[i : i + 255].encode() for i in range(0, len(value), 255)]
                rrset.add(dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks), 60)
        assert self._transport is not None
        self._transport.sendto(response.to_wire(), addr)

    def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()


@pytest.fixture(scope="module")
async def dns_stub() -> Any:
    stub = await DnsStub().start()
    yield stub
    stub.stop()


def admin(stack: Stack, tenant: str | None = None) -> dict[str, str]:
    token = issue_token(stack.settings, "admin_user", [tenant or stack.tenant], roles=["admin"])
    return {"Authorization": f"Bearer {token}"}


async def as_admin(
    stack: Stack, method: str, path: str, tenant: str | None = None, **kw: Any
) -> httpx.Response:
    return await stack.api.request(method, path, headers=admin(stack, tenant), **kw)


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    return body


async def test_identity_dkim_record_and_its_verification_through_dns(
    make_stack: StackFactory, dns_stub: DnsStub
) -> None:
    stack = await make_stack(worker=False, dns_nameservers=f"127.0.0.1:{dns_stub.port}")
    body = {
        "tenantId": stack.tenant,
        "name": "Club A news",
        "clubId": "club_a",
        "fromName": "Club Ä",
        "fromAddress": "News@Club-A.Example",
        "replyTo": "office@club-a.example",
        "smsSender": "ClubA",
        "dkim": {"selector": "s2026", "generate": True},
    }
    r = await as_admin(stack, "POST", "/sender-identities", json=body)
    assert r.status_code == 201, r.text
    identity = r.json()
    assert "PRIVATE" not in r.text and "privateKey" not in r.text
    assert identity["fromAddress"] == "news@club-a.example" and identity["smsSender"] == "ClubA"
    record = identity["dkim"]["dnsRecord"]
    assert record["name"] == "s2026._domainkey.club-a.example" and record["type"] == "TXT"
    assert record["value"].startswith("v=DKIM1; k=rsa; p=")
    assert identity["verified"] is False and identity["dkim"]["verified"] is False
    # At rest: sealed, and the sealed key is the private half of the published one.
    async with stack.engine.connect() as conn:
        sealed = (
            await conn.execute(
                text("SELECT dkim_key FROM sender_identities WHERE id = :i"), {"i": identity["id"]}
            )
        ).scalar_one()
    assert "PRIVATE" not in sealed
    assert "p=" + public_b64(load_key(unseal(sealed))) in record["value"]

    verify = f"/sender-identities/{identity['id']}/verify"
    problem(await as_admin(stack, "POST", verify), 422)  # nothing published yet
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    dns_stub.publish(record["name"], f"v=DKIM1; k=rsa; p={public_b64(other)}")
    assert "another key" in problem(await as_admin(stack, "POST", verify), 422)["detail"]
    dns_stub.publish(record["name"], record["value"])
    r = await as_admin(stack, "POST", verify)
    assert r.status_code == 200, r.text
    assert r.json()["verified"] is True and r.json()["dkim"]["verifiedAt"]
    assert record["name"] in dns_stub.queries


async def test_identity_lifecycle_reverification_and_deletion(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    body = {"tenantId": stack.tenant, "name": "A", "clubId": "club_a", "fromAddress": "news@club-a.example"}
    r = await as_admin(stack, "POST", "/sender-identities", json=body)
    assert r.status_code == 201, r.text
    identity = r.json()
    async with stack.engine.begin() as conn:  # as if verified (the test above verifies through DNS)
        await conn.execute(
            text("UPDATE sender_identities SET verified_at = now() WHERE id = :i"), {"i": identity["id"]}
        )
    # Reads are open to the tenant's users; the list filters by club.
    r = await stack.call("GET", "/sender-identities", params={"tenantId": stack.tenant, "clubId": "club_a"})
    assert r.status_code == 200 and [i["id"] for i in r.json()["data"]] == [identity["id"]]
    r = await stack.call("GET", "/sender-identities", params={"tenantId": stack.tenant, "clubId": "club_b"})
    assert r.json()["data"] == []
    # A new domain must be verified again; a name change keeps the verification.
    r = await as_admin(stack, "PATCH", f"/sender-identities/{identity['id']}", json={"name": "Renamed"})
    assert r.status_code == 200 and r.json()["verified"] is True and r.json()["name"] == "Renamed"
    r = await as_admin(
        stack, "PATCH", f"/sender-identities/{identity['id']}", json={"fromAddress": "news@club-b.example"}
    )
    assert r.status_code == 200 and r.json()["verified"] is False
    assert r.json()["dkim"]["dnsRecord"]["name"] == "campaigns._domainkey.club-b.example"
    # In use as the tenant's default: no delete; then gone for good.
    r = await as_admin(
        stack, "PATCH", f"/tenants/{stack.tenant}/settings", json={"defaultSenderIdentityId": identity["id"]}
    )
    assert r.status_code == 200, r.text
    problem(await as_admin(stack, "DELETE", f"/sender-identities/{identity['id']}"), 409)
    r = await as_admin(
        stack, "PATCH", f"/tenants/{stack.tenant}/settings", json={"defaultSenderIdentityId": None}
    )
    assert r.status_code == 200 and r.json()["defaultSenderIdentityId"] is None
    assert (await as_admin(stack, "DELETE", f"/sender-identities/{identity['id']}")).status_code == 204
    problem(await stack.call("GET", f"/sender-identities/{identity['id']}"), 404)


async def test_uploaded_keys_and_sender_validation(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    base = {"tenantId": stack.tenant, "name": "Uploaded", "fromAddress": "hi@club.example"}
    r = await as_admin(stack, "POST", "/sender-identities", json={**base, "dkim": {"privateKey": pem}})
    assert r.status_code == 201, r.text
    assert r.json()["dkim"]["dnsRecord"]["value"] == f"v=DKIM1; k=rsa; p={public_b64(key)}"
    assert r.json()["dkim"]["selector"] == "campaigns"  # the default selector
    assert pem.splitlines()[1] not in r.text
    bad_requests = [
        {**base, "dkim": {"privateKey": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"}},
        {**base, "dkim": {"generate": True, "privateKey": pem}},
        {**base, "dkim": {"selector": "Bad Selector", "generate": True}},
        {"tenantId": stack.tenant, "name": "Nothing to send as"},
        {
            "tenantId": stack.tenant,
            "name": "Reply-To alone",
            "smsSender": "+15551234567",
            "replyTo": "a@b.example",
        },
        {**base, "fromAddress": "not an address"},
        {**base, "smsSender": "TOO LONG SENDER"},
        {**base, "smsSender": "12"},
        {**base, "smsSender": "+1555"},
        {**base, "fromName": "Two\r\nLines"},
    ]
    for bad in bad_requests:
        problem(await as_admin(stack, "POST", "/sender-identities", json=bad), 422)
    for sender, stored in (
        ("+1 555 123 4567".replace(" ", ""), "+15551234567"),
        ("72345", "72345"),
        ("Club 1", "Club 1"),
    ):
        r = await as_admin(stack, "POST", "/sender-identities", json={**base, "smsSender": sender})
        assert r.status_code == 201 and r.json()["smsSender"] == stored, r.text
    # An SMS-only identity has no domain: usable at once, nothing to verify.
    r = await as_admin(
        stack,
        "POST",
        "/sender-identities",
        json={"tenantId": stack.tenant, "name": "SMS", "smsSender": "ClubA"},
    )
    assert r.status_code == 201 and r.json()["verified"] is True and r.json()["dkim"] is None
    problem(await as_admin(stack, "POST", f"/sender-identities/{r.json()['id']}/verify"), 409)


async def test_admin_role_and_tenant_isolation(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    body = {"tenantId": stack.tenant, "name": "A", "smsSender": "ClubA"}
    assert "admin" in problem(await stack.call("POST", "/sender-identities", json=body), 403)["detail"]
    r = await as_admin(stack, "POST", "/sender-identities", json=body)
    assert r.status_code == 201, r.text
    identity = r.json()["id"]
    smtp = {
        "tenantId": stack.tenant,
        "name": "Relay",
        "kind": "SMTP",
        "smtp": {"host": "127.0.0.1", "port": 25},
    }
    problem(await stack.call("POST", "/provider-accounts", json=smtp), 403)
    account = (await as_admin(stack, "POST", "/provider-accounts", json=smtp)).json()["id"]
    # Non-admins of the tenant read identities and accounts, not settings, and change nothing.
    assert (await stack.call("GET", f"/sender-identities/{identity}")).status_code == 200
    assert (await stack.call("GET", f"/provider-accounts/{account}")).status_code == 200
    problem(await stack.call("GET", f"/tenants/{stack.tenant}/settings"), 403)
    problem(await stack.call("PATCH", f"/sender-identities/{identity}", json={"name": "x"}), 403)
    problem(await stack.call("DELETE", f"/provider-accounts/{account}"), 403)
    problem(await stack.call("POST", f"/sender-identities/{identity}/verify"), 403)
    # Another tenant, even an admin of it, sees none of it: 404, exactly like a missing id.
    other = stack.other_tenant
    for method, path in (
        ("GET", f"/sender-identities/{identity}"),
        ("PATCH", f"/sender-identities/{identity}"),
        ("DELETE", f"/sender-identities/{identity}"),
        ("POST", f"/sender-identities/{identity}/verify"),
        ("GET", f"/provider-accounts/{account}"),
        ("PATCH", f"/provider-accounts/{account}"),
        ("DELETE", f"/provider-accounts/{account}"),
        ("GET", f"/tenants/{stack.tenant}/settings"),
        ("PATCH", f"/tenants/{stack.tenant}/settings"),
    ):
        kw: dict[str, Any] = {"json": {}} if method == "PATCH" else {}
        r = await as_admin(stack, method, path, tenant=other, **kw)
        assert problem(r, 404)["detail"].endswith("not found"), (method, path)
        assert identity not in r.text and account not in r.text
    r = await as_admin(stack, "GET", "/sender-identities", tenant=other, params={"tenantId": other})
    assert r.json()["data"] == []
    # Another tenant's ids cannot be named as defaults or on identities.
    problem(
        await as_admin(
            stack,
            "PATCH",
            f"/tenants/{other}/settings",
            tenant=other,
            json={"defaultSenderIdentityId": identity},
        ),
        422,
    )
    problem(
        await as_admin(
            stack,
            "PATCH",
            f"/tenants/{other}/settings",
            tenant=other,
            json={"defaultEmailAccountId": account},
        ),
        422,
    )
    mine = {"tenantId": other, "name": "B", "smsSender": "ClubB", "emailAccountId": account}
    problem(await as_admin(stack, "POST", "/sender-identities", tenant=other, json=mine), 422)


async def test_settings_defaults_and_merge_patch(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    path = f"/tenants/{stack.tenant}/settings"
    r = await as_admin(stack, "GET", path)
    assert r.status_code == 200, r.text
    defaults = r.json()
    assert defaults["defaultSenderIdentityId"] is None and defaults["defaultEmailAccountId"] is None
    assert defaults["timezone"] == "UTC" and defaults["smsHelpText"].startswith("Reply STOP")
    policy = (await stack.call("GET", f"/tenants/{stack.tenant}/policy")).json()
    assert defaults["policy"] == policy
    r = await as_admin(
        stack, "PATCH", path, json={"timezone": "Europe/Berlin", "smsHelpText": "Club A: reply STOP to stop."}
    )
    assert r.status_code == 200 and r.json()["timezone"] == "Europe/Berlin"
    # `policy` merges into the policy stored where /policy keeps it.
    r = await as_admin(stack, "PATCH", path, json={"policy": {"requireApproval": True}})
    assert r.status_code == 200, r.text
    assert r.json()["policy"]["requireApproval"] is True and r.json()["timezone"] == "Europe/Berlin"
    assert (await stack.call("GET", f"/tenants/{stack.tenant}/policy")).json()["requireApproval"] is True
    problem(await as_admin(stack, "PATCH", path, json={"policy": {"requireApproval": "often"}}), 422)
    problem(await as_admin(stack, "PATCH", path, json={"timezone": "Mars/Olympus"}), 422)
    problem(await as_admin(stack, "PATCH", path, json={"defaultSenderIdentityId": "sender_nope"}), 422)
    problem(await as_admin(stack, "PATCH", path, json={"colour": "red"}), 422)
    # `null` puts a value back to its default; `policy: null` restores the default policy.
    r = await as_admin(stack, "PATCH", path, json={"timezone": None, "policy": None})
    assert r.status_code == 200 and r.json()["timezone"] == "UTC" and r.json()["policy"] == policy
    assert r.json()["smsHelpText"] == "Club A: reply STOP to stop."
