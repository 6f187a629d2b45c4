"""Outbound webhooks (issue 16): a receiver that fails for a while then recovers gets every event
once per event id, every request's signature verifies; the API's rules (admin only, other
tenants' endpoints 404, SSRF refusals, secrets shown once); dead letters and their replay.

The receiver is a real aiohttp server on 127.0.0.1. CI runs a 10 s failure window;
`CAMPAIGNS_WEBHOOKS_FULL=1` runs the acceptance's 2 minutes.
"""

import asyncio
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiohttp import web
from sqlalchemy import text
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from api.auth import issue_token
from core.webhook_signing import verify
from db.rollups import NewInteraction, insert_interaction
from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, wait_for
from workflows.webhook_delivery import WebhookEndpointWorkflow

FULL = os.environ.get("CAMPAIGNS_WEBHOOKS_FULL") == "1"
FAIL_SECONDS = 120.0 if FULL else 10.0
ALL_TYPES = [
    "campaign.status_changed",
    "message.sent",
    "message.delivered",
    "message.opened",
    "message.clicked",
    "message.unsubscribed",
    "message.bounced",
    "message.failed",
    "message.complained",
    "message.converted",
]


@dataclass
class Received:
    at: float
    msg_id: str
    timestamp: str
    signature: str
    body: bytes
    status: int

    def event_ids(self) -> list[str]:
        return [str(e["id"]) for e in json.loads(self.body)["events"]]


@dataclass
class Receiver:
    """A tenant's webhook receiver: answers 503 until `fail_until` (loop time), then 204."""

    fail_until: float = 0.0
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> "Receiver":
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = asyncio.get_running_loop().time()
        status = 503 if now < self.fail_until else 204
        self.requests.append(
            Received(
                now,
                request.headers.get("Webhook-Id", ""),
                request.headers.get("Webhook-Timestamp", ""),
                request.headers.get("Webhook-Signature", ""),
                body,
                status,
            )
        )
        if status == 204 and self.delay:  # recorded on arrival: a sender killed meanwhile sent it
            await asyncio.sleep(self.delay)
        return web.Response(status=status)

    def accepted(self) -> Counter[str]:
        """Event id -> how often it arrived in a request answered 2xx."""
        return Counter(i for r in self.requests if r.status < 300 for i in r.event_ids())

    def events_in_order(self) -> list[dict[str, Any]]:
        """Accepted events, first arrival of each id, in arrival order."""
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for r in self.requests:
            if r.status >= 300:
                continue
            for e in json.loads(r.body)["events"]:
                if e["id"] not in seen:
                    seen.add(e["id"])
                    out.append(e)
        return out


def admin(stack: Stack, tenant: str | None = None) -> dict[str, str]:
    token = issue_token(stack.settings, "admin_test", [tenant or stack.tenant], roles=["admin"])
    return {"Authorization": f"Bearer {token}"}


async def call(stack: Stack, method: str, path: str, tenant: str | None = None, **kw: Any) -> httpx.Response:
    return await stack.api.request(method, path, headers=admin(stack, tenant), **kw)


async def create_endpoint(stack: Stack, url: str, types: list[str] | None = None) -> dict[str, Any]:
    body = {"tenantId": stack.tenant, "url": url, "eventTypes": types or ALL_TYPES, "description": "CRM"}
    r = await call(stack, "POST", "/webhook-endpoints", json=body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def outbox_ids(stack: Stack) -> set[str]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id FROM webhook_outbox WHERE tenant_id = :t"), {"t": stack.tenant}
        )
        return {str(r[0]) for r in rows}


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def stop_endpoint(stack: Stack, endpoint_id: str) -> None:
    r = await call(stack, "DELETE", f"/webhook-endpoints/{endpoint_id}")
    assert r.status_code == 204, r.text
    handle = stack.client.get_workflow_handle(f"webhook-endpoint-{endpoint_id}")
    assert await asyncio.wait_for(handle.result(), 30) == "deleted"
    # The run's history replays against the code: the delivery loop is deterministic.
    replayer = Replayer(workflows=[WebhookEndpointWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(await handle.fetch_history())


async def test_a_receiver_down_then_up_gets_every_event_once_signed(make_stack: StackFactory) -> None:
    stack = await make_stack(webhook_poll_seconds=0.5, webhook_retry_max_seconds=3, webhook_batch_size=8)
    loop = asyncio.get_running_loop()
    receiver = await Receiver(fail_until=loop.time() + FAIL_SECONDS).start()
    try:
        endpoint = await create_endpoint(stack, receiver.url)
        secret = endpoint["secret"]
        assert secret.startswith("whsec_")
        audience = await make_audience(stack.engine, stack.tenant, 10)
        email_t, sms_t = await make_templates(stack.engine, stack.tenant)
        cid = await create_campaign(stack, audience, email_t, sms_t)
        r = await stack.call("POST", f"/campaigns/{cid}/execute")
        assert r.status_code == 200, r.text
        await wait_for(stack, cid, "COMPLETED", timeout=60)
        expected = await outbox_ids(stack)
        assert len(expected) >= 22  # 20 messages sent, and the campaign's status changes

        async def all_arrived() -> bool:
            return set(receiver.accepted()) >= expected

        await wait_until(all_arrived, FAIL_SECONDS + 60, "every event at the receiver")
        stats = (await call(stack, "GET", f"/webhook-endpoints/{endpoint['id']}/stats")).json()
        await stop_endpoint(stack, endpoint["id"])
    finally:
        await receiver.stop()

    accepted = receiver.accepted()
    assert set(accepted) == expected, "an event missing, or one that is not this tenant's"
    duplicates = sum(n - 1 for n in accepted.values())
    print(f"outbound webhooks: {len(expected)} events, {duplicates} delivered twice")
    assert duplicates <= 8, "more re-deliveries than one batch"
    failed = [r for r in receiver.requests if r.status >= 300]
    assert failed, "the receiver never failed: the window was missed"
    assert min(r.at for r in receiver.requests if r.status < 300) >= receiver.fail_until
    now = time.time()
    for req in receiver.requests:
        sent_at = float(req.timestamp)
        assert verify(secret, req.msg_id, req.timestamp, req.signature, req.body, now=sent_at), req.msg_id
        assert abs(now - sent_at) < FAIL_SECONDS + 120
        assert not verify(secret, req.msg_id, req.timestamp, req.signature, req.body + b" ", now=sent_at)
    events = receiver.events_in_order()
    statuses = [e["data"]["status"] for e in events if e["type"] == "campaign.status_changed"]
    assert statuses[-1] == "COMPLETED" and statuses.index("ACTIVE") < statuses.index("COMPLETED")
    sent = [e for e in events if e["type"] == "message.sent"]
    assert len(sent) == 20 and all(e["campaignId"] == cid and e["tenantId"] == stack.tenant for e in sent)
    # Each names its message, as /interactions lists its SENT: the ledger row's id, once each.
    listed = await stack.call(
        "GET", f"/campaigns/{cid}/interactions", tenant=stack.tenant, params={"type": "SENT", "take": 100}
    )
    assert listed.status_code == 200, listed.text
    listed_ids = sorted(i["id"] for i in listed.json()["data"])
    assert sorted(e["data"]["interactionId"] for e in sent) == listed_ids
    assert sorted(e["data"]["deliveryId"] for e in sent) == listed_ids and len(set(listed_ids)) == 20
    assert stats["pending"] == 0 and stats["dead"] == 0, stats
    assert stats["delivered"] >= len(expected) and stats["failedAttempts"] >= 1, stats
    assert stats["lastError"].startswith("HTTP 503") and stats["failingSince"] is None, stats


async def test_the_api_rules(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False, webhook_allow_private=False, webhook_allow_http=False)
    base = {"tenantId": stack.tenant, "eventTypes": ["message.opened"]}
    for url, why in (
        ("http://example.com/hook", "https"),
        ("https://127.0.0.1/hook", "non-public"),
        ("https://10.1.2.3/hook", "non-public"),
        ("https://169.254.169.254/latest", "non-public"),
        ("https://[::1]/hook", "non-public"),
        ("https://localhost/hook", "non-public"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("ftp://example.com/x", "https"),
    ):
        r = await call(stack, "POST", "/webhook-endpoints", json={**base, "url": url})
        assert r.status_code == 422, (url, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert why in r.text, (url, r.text)
    bad = [
        {**base, "url": "https://93.184.215.14/hook", "eventTypes": []},
        {**base, "url": "https://93.184.215.14/hook", "eventTypes": ["message.nope"]},
        {**base, "url": "https://93.184.215.14/hook", "secret": "mine"},
    ]
    for body in bad:
        r = await call(stack, "POST", "/webhook-endpoints", json=body)
        assert r.status_code == 422, r.text
    # A plain user (no admin role) may not, and another tenant's admin sees nothing.
    good = {**base, "url": "https://93.184.215.14/hook"}
    r = await stack.call("POST", "/webhook-endpoints", json=good)
    assert r.status_code == 403, r.text
    r = await call(stack, "POST", "/webhook-endpoints", json=good)
    assert r.status_code == 201, r.text
    endpoint = r.json()
    assert endpoint["secret"].startswith("whsec_") and endpoint["eventTypes"] == ["message.opened"]
    eid = endpoint["id"]
    shown = (await call(stack, "GET", f"/webhook-endpoints/{eid}")).json()
    assert "secret" not in shown and shown["url"] == good["url"]
    listed = (await call(stack, "GET", "/webhook-endpoints", params={"tenantId": stack.tenant})).json()
    assert [e["id"] for e in listed["data"]] == [eid] and "secret" not in listed["data"][0]
    for method, path in (
        ("GET", f"/webhook-endpoints/{eid}"),
        ("GET", f"/webhook-endpoints/{eid}/stats"),
        ("PATCH", f"/webhook-endpoints/{eid}"),
        ("DELETE", f"/webhook-endpoints/{eid}"),
        ("POST", f"/webhook-endpoints/{eid}/rotate-secret"),
    ):
        kw: dict[str, Any] = {"json": {"enabled": False}} if method == "PATCH" else {}
        r = await call(stack, method, path, tenant=stack.other_tenant, **kw)
        assert r.status_code == 404, (method, path, r.text)
        r = await stack.call(method, path, **kw)
        assert r.status_code == 403, (method, path, r.text)
    sealed = await stored_secret(stack, eid)
    assert endpoint["secret"] not in sealed
    r = await call(stack, "PATCH", f"/webhook-endpoints/{eid}", json={"url": "https://192.168.0.2/x"})
    assert r.status_code == 422, r.text
    r = await call(stack, "PATCH", f"/webhook-endpoints/{eid}", json={"enabled": False, "description": None})
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["description"] is None, r.text
    r = await call(stack, "PATCH", f"/webhook-endpoints/{eid}", json={"url": None})
    assert r.status_code == 422, r.text
    rotated = (await call(stack, "POST", f"/webhook-endpoints/{eid}/rotate-secret")).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != endpoint["secret"]
    replays: list[dict[str, Any]] = [
        {},
        {"eventIds": ["1"], "from": "2026-01-01T00:00:00Z"},
        {"eventIds": ["x"]},
    ]
    for replay in replays:
        r = await call(stack, "POST", f"/webhook-endpoints/{eid}/replay", json=replay)
        assert r.status_code == 422, r.text
    r = await call(stack, "POST", f"/webhook-endpoints/{eid}/replay", json={"eventIds": ["1"]})
    assert r.status_code == 202 and r.json() == {"queued": 0}, r.text
    r = await call(stack, "DELETE", f"/webhook-endpoints/{eid}")
    assert r.status_code == 204, r.text
    r = await call(stack, "GET", f"/webhook-endpoints/{eid}")
    assert r.status_code == 404, r.text


async def stored_secret(stack: Stack, endpoint_id: str) -> str:
    async with stack.engine.connect() as conn:
        row = await conn.execute(
            text("SELECT secret FROM webhook_endpoints WHERE id = :i"), {"i": endpoint_id}
        )
        return str(row.scalar_one())


async def add_interactions(stack: Stack, n: int, type_: str = "OPENED") -> None:
    async with stack.engine.begin() as conn:
        for i in range(n):
            item = NewInteraction(
                tenant_id=stack.tenant,
                campaign_id="campaign_x",
                customer_id=f"customer_{i}",
                channel="EMAIL",
                type=type_,
                occurred_at=datetime.now(UTC),
            )
            await insert_interaction(conn, item)


async def test_dead_letters_and_their_replay(make_stack: StackFactory) -> None:
    # Dead-lettering after ~1.7 s of failure, retries every second at most.
    stack = await make_stack(
        webhook_dead_letter_days=0.00002, webhook_poll_seconds=0.3, webhook_retry_max_seconds=1
    )
    receiver = await Receiver(fail_until=float("inf")).start()
    try:
        endpoint = await create_endpoint(stack, receiver.url, ["message.opened"])
        eid = endpoint["id"]
        await add_interactions(stack, 3)
        await add_interactions(stack, 2, "CLICKED")  # not subscribed: never sent

        async def stats() -> dict[str, Any]:
            body: dict[str, Any] = (await call(stack, "GET", f"/webhook-endpoints/{eid}/stats")).json()
            return body

        async def all_dead() -> bool:
            return int((await stats())["dead"]) == 3

        await wait_until(all_dead, 30, "three dead letters")
        s = await stats()
        assert s["pending"] == 0 and s["delivered"] == 0 and s["failingSince"] is not None, s
        receiver.fail_until = 0.0
        ids = sorted(await outbox_ids(stack), key=int)
        opened = [i for i in ids if i in {e for r in receiver.requests for e in r.event_ids()}]
        assert len(opened) == 3
        r = await call(stack, "POST", f"/webhook-endpoints/{eid}/replay", json={"eventIds": opened[:2]})
        assert r.status_code == 202 and r.json() == {"queued": 2}, r.text

        async def replayed_two() -> bool:
            return set(receiver.accepted()) == set(opened[:2])

        await wait_until(replayed_two, 20, "two replayed events")
        window = {"from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(), "to": None}
        r = await call(stack, "POST", f"/webhook-endpoints/{eid}/replay", json=window)
        assert r.status_code == 202 and r.json() == {"queued": 3}, r.text  # replayed ones may go again

        async def replayed_all() -> bool:
            return set(receiver.accepted()) == set(opened) and int((await stats())["replaying"]) == 0

        await wait_until(replayed_all, 20, "every dead letter replayed")
        s = await stats()
        assert s["dead"] == 0 and s["failingSince"] is None and s["delivered"] == 5, s
        # Disabled, the endpoint pauses: events keep being recorded and arrive once it is enabled.
        r = await call(stack, "PATCH", f"/webhook-endpoints/{eid}", json={"enabled": False})
        assert r.status_code == 200, r.text
        await add_interactions(stack, 2)
        await asyncio.sleep(1.0)
        assert set(receiver.accepted()) == set(opened) and int((await stats())["pending"]) == 2
        r = await call(stack, "PATCH", f"/webhook-endpoints/{eid}", json={"enabled": True})
        assert r.status_code == 200, r.text

        async def resumed() -> bool:
            return len(receiver.accepted()) == 5

        await wait_until(resumed, 20, "the events of the pause")
        await stop_endpoint(stack, eid)
    finally:
        await receiver.stop()
    for req in receiver.requests:
        assert verify(
            endpoint["secret"], req.msg_id, req.timestamp, req.signature, req.body, now=float(req.timestamp)
        )
