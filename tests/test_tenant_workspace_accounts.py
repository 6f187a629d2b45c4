"""Provider accounts at the API and on the send path (docs/tenants-and-providers.md): credentials
sealed and never returned, hosts in private networks refused, and a tenant's own Twilio account
carrying its SMS (HTTP Basic with its own SID and token, its sender, status callbacks to its
Twilio webhook), seen at a Twilio-shaped HTTP server of the test's own.
"""

import base64
from typing import Any

from aiohttp import web
from sqlalchemy import text

from core.secrets import unseal
from tests.conftest import StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, wait_for
from tests.test_tenant_workspace import as_admin, problem


async def test_provider_accounts_keep_credentials_sealed(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    smtp = {
        "tenantId": stack.tenant,
        "name": "Club relay",
        "kind": "SMTP",
        "smtp": {
            "host": "127.0.0.1",
            "port": 2525,
            "starttls": False,
            "username": "club",
            "password": "hunter2-smtp",
        },
    }
    r = await as_admin(stack, "POST", "/provider-accounts", json=smtp)
    assert r.status_code == 201, r.text
    account = r.json()
    assert account["smtp"] == {
        "host": "127.0.0.1",
        "port": 2525,
        "starttls": False,
        "username": "club",
        "hasPassword": True,
    }
    assert "hunter2" not in r.text
    async with stack.engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT config::text, secret FROM provider_accounts WHERE id = :i"), {"i": account["id"]}
            )
        ).one()
    assert "hunter2" not in stored[0] and "hunter2" not in stored[1] and unseal(stored[1]) == "hunter2-smtp"
    # A patch without the password keeps it; `null` clears the optional username.
    r = await as_admin(
        stack, "PATCH", f"/provider-accounts/{account['id']}", json={"smtp": {"port": 2526, "username": None}}
    )
    assert r.status_code == 200, r.text
    assert (
        r.json()["smtp"]["port"] == 2526
        and r.json()["smtp"]["username"] is None
        and r.json()["smtp"]["hasPassword"]
    )
    problem(
        await as_admin(
            stack, "PATCH", f"/provider-accounts/{account['id']}", json={"sms": {"url": "http://x"}}
        ),
        422,
    )
    problem(
        await as_admin(stack, "PATCH", f"/provider-accounts/{account['id']}", json={"smtp": {"host": None}}),
        422,
    )

    sms: dict[str, Any] = {
        "tenantId": stack.tenant,
        "name": "Twilio",
        "kind": "SMS",
        "sms": {
            "url": "http://127.0.0.1:9/2010-04-01/Accounts/AC1/Messages.json",
            "accountSid": "AC1",
            "authToken": "tok-secret",
        },
    }
    r = await as_admin(stack, "POST", "/provider-accounts", json=sms)
    assert r.status_code == 201, r.text
    assert r.json()["sms"]["hasAuthToken"] is True and "tok-secret" not in r.text
    r = await stack.call("GET", "/provider-accounts", params={"tenantId": stack.tenant, "kind": "SMS"})
    assert [a["name"] for a in r.json()["data"]] == ["Twilio"] and r.json()["meta"]["total"] == 1
    problem(await as_admin(stack, "POST", "/provider-accounts", json={**smtp, "sms": sms["sms"]}), 422)
    problem(
        await as_admin(
            stack, "POST", "/provider-accounts", json={**sms, "sms": {**sms["sms"], "url": "ftp://x"}}
        ),
        422,
    )
    # An identity naming the account keeps it from being deleted.
    ident = {"tenantId": stack.tenant, "name": "A", "smsSender": "ClubA", "emailAccountId": account["id"]}
    r = await as_admin(stack, "POST", "/sender-identities", json=ident)
    assert r.status_code == 201, r.text
    problem(await as_admin(stack, "DELETE", f"/provider-accounts/{account['id']}"), 409)
    problem(
        await as_admin(stack, "POST", "/sender-identities", json={**ident, "smsAccountId": account["id"]}),
        422,
    )


async def test_provider_hosts_in_private_networks_are_refused(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False, provider_hosts_allow_private=False)
    for host in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "localhost", "[::1]", "no-such-host.invalid"):
        body = {"tenantId": stack.tenant, "name": "x", "kind": "SMTP", "smtp": {"host": host.strip("[]")}}
        assert (
            "host" in problem(await as_admin(stack, "POST", "/provider-accounts", json=body), 422)["detail"]
        )
    url = "http://169.254.169.254/latest/meta-data"
    body = {"tenantId": stack.tenant, "name": "x", "kind": "SMS", "sms": {"url": url, "authToken": "t"}}
    problem(await as_admin(stack, "POST", "/provider-accounts", json=body), 422)


class FakeTwilio:
    """Twilio's Messages API as far as sending goes: HTTP Basic `AccountSid:AuthToken` on
    `/2010-04-01/Accounts/{sid}/Messages.json`, a form with To, From, Body (and StatusCallback)."""

    def __init__(self, sid: str, token: str) -> None:
        self.sid, self.token = sid, token
        self.forms: list[dict[str, str]] = []
        self.refused = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/2010-04-01/Accounts/{self.sid}/Messages.json"

    async def _post(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{self.sid}:{self.token}".encode()).decode()
        if request.headers.get("Authorization") != expected or request.match_info["sid"] != self.sid:
            self.refused += 1
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.forms.append(form)
        return web.json_response({"sid": f"SM{len(self.forms):032d}", "status": "queued"}, status=201)

    async def start(self) -> "FakeTwilio":
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def test_sms_goes_through_the_tenants_own_twilio_account_as_its_sender(
    make_stack: StackFactory,
) -> None:
    """A tenant's Twilio account (Basic auth with its own SID and token) carries its campaign's SMS,
    sent as the identity's alphanumeric sender, each asking for status callbacks at the tenant's
    Twilio webhook; the platform's SMS account carries none of them."""
    twilio = await FakeTwilio("AC0123456789abcdef0123456789abcdef", "club-a-token").start()
    try:
        stack = await make_stack()
        hook = {"tenantId": stack.tenant, "provider": "twilio", "secret": "club-a-token"}
        r = await as_admin(stack, "POST", "/provider-webhooks", json=hook)
        assert r.status_code == 201, r.text
        callback = r.json()["url"]
        sms = {"url": twilio.url, "accountSid": twilio.sid, "authToken": twilio.token}
        account = {"tenantId": stack.tenant, "name": "Club A Twilio", "kind": "SMS", "sms": sms}
        r = await as_admin(stack, "POST", "/provider-accounts", json=account)
        assert r.status_code == 201, r.text
        identity = {
            "tenantId": stack.tenant,
            "name": "SMS",
            "smsSender": "ClubA",
            "smsAccountId": r.json()["id"],
        }
        r = await as_admin(stack, "POST", "/sender-identities", json=identity)
        assert r.status_code == 201, r.text
        settings = {"defaultSenderIdentityId": r.json()["id"]}
        assert (
            await as_admin(stack, "PATCH", f"/tenants/{stack.tenant}/settings", json=settings)
        ).status_code == 200
        audience = await make_audience(stack.engine, stack.tenant, 6)
        _, sms_t = await make_templates(stack.engine, stack.tenant)
        campaign = await create_campaign(stack, audience, None, sms_t)
        assert (await stack.call("POST", f"/campaigns/{campaign}/execute")).status_code == 200
        await wait_for(stack, campaign, "COMPLETED")
        assert twilio.refused == 0
        assert sorted(f["To"] for f in twilio.forms) == sorted(audience.phones())
        assert {f["From"] for f in twilio.forms} == {"ClubA"}
        assert all(f["StatusCallback"].startswith(callback + "?deliveryId=delivery_") for f in twilio.forms)
        assert stack.sms.counts(audience.phones()) == {}
    finally:
        await twilio.stop()
