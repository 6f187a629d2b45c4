"""Graceful shutdown (issue 8): SIGTERM to a worker lets the running send page finish, and a new
worker completes the campaign with every recipient sent exactly once; a TRIGGERED campaign's wait
for events does not hold a worker's stop; SIGTERM to the API (uvicorn) drains the requests in flight
before the process exits."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select
from temporalio.api.enums.v1 import PendingActivityState

from db.models import Customer, Delivery
from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.faults.processes import kill
from tests.helpers import create_campaign, create_triggered_campaign, ledger, received_emails, wait_for
from tests.test_worker_crash import start_worker

ROOT = Path(__file__).resolve().parents[1]


async def pending_rows(stack: Stack, campaign_id: str) -> int:
    """Messages claimed without a recorded answer: what a crash would turn into UNKNOWN."""
    async with stack.engine.connect() as conn:
        query = (
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.campaign_id == campaign_id, Delivery.outcome == "PENDING")
        )
        return int((await conn.execute(query)).scalar_one())


async def test_sigterm_lets_the_running_page_finish_and_a_new_worker_completes(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    batch = 250
    stack = await make_stack(worker=False, batch_size=batch, send_concurrency=4)
    audience = await make_audience(stack.engine, stack.tenant, 1000)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None)

    def sent() -> int:
        return sum(received_emails(stack, audience).values())

    first = start_worker(stack, tmp_path / "worker1.log")
    second = None
    try:
        r = await stack.call("POST", f"/campaigns/{cid}/execute")
        assert r.status_code == 200, r.text
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while sent() < 60:
            assert loop.time() < deadline and first.poll() is None, (tmp_path / "worker1.log").read_text()
            await asyncio.sleep(0.01)
        first.send_signal(signal.SIGTERM)
        at_signal = sent()
        returncode = await asyncio.to_thread(first.wait, 60)
        at_exit = sent()
        log = (tmp_path / "worker1.log").read_text()
        assert returncode == 0, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        # The worker logs what it does, never its secrets.
        for secret in (stack.settings.sms_token, stack.settings.jwt_secret, stack.settings.tracking_secret):
            assert secret not in log
        # The page that was running finished: it went on sending after the signal, stopped at a page
        # boundary, and left no message claimed without an answer.
        assert at_signal < at_exit < len(audience.customers), (at_signal, at_exit)
        assert at_exit % batch == 0, (at_signal, at_exit)
        assert await pending_rows(stack, cid) == 0

        second = start_worker(stack, tmp_path / "worker2.log")
        body = await wait_for(stack, cid, "COMPLETED", timeout=120)
    finally:
        kill(first)
        kill(second)

    emails = received_emails(stack, audience)
    assert len(emails) == len(audience.emails()) and set(emails.values()) == {1}
    rows = await ledger(stack, cid)
    assert Counter(row["outcome"] for row in rows) == Counter({"SENT": len(audience.customers)})
    assert body["unknownCount"] == 0 and body["sentCount"] == len(audience.customers)


async def test_a_page_the_grace_cannot_cover_stops_as_a_pause_would_and_the_next_worker_sends_the_rest(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    # One page of 400 at 20 emails a second takes 20 s; the worker's grace is 12 s, so the page
    # must stop itself 2 s after the signal (10 s before the grace ends) with nothing on the wire,
    # not be cancelled at 12 s with its in-flight messages in doubt.
    total = 400
    stack = await make_stack(
        worker=False,
        batch_size=total,
        pages_in_flight=1,
        rate_limits={"email": {"perSecond": 20}},
        shutdown_grace_seconds=12,
    )
    audience = await make_audience(stack.engine, stack.tenant, total)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None)

    def sent() -> int:
        return sum(received_emails(stack, audience).values())

    log1 = tmp_path / "worker1.log"
    first = start_worker(stack, log1)
    second = None
    try:
        assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
        deadline = asyncio.get_running_loop().time() + 60
        while sent() < 40:
            assert asyncio.get_running_loop().time() < deadline and first.poll() is None, _tail(log1)
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGTERM)
        started = time.monotonic()
        returncode = await asyncio.to_thread(first.wait, 60)
        stopped_in = time.monotonic() - started
        assert returncode == 0 and "Traceback" not in _tail(log1), _tail(log1)
        assert stopped_in < 8, f"the worker took {stopped_in:.1f} s to stop"
        at_exit = sent()
        assert at_exit < total, "the page finished before the worker stopped: nothing was tested"
        assert await pending_rows(stack, cid) == 0  # nothing was left on the wire, nothing in doubt

        second = start_worker(stack, tmp_path / "worker2.log")
        body = await wait_for(stack, cid, "COMPLETED", timeout=120)
    finally:
        kill(first)
        kill(second)
    emails = received_emails(stack, audience)
    assert len(emails) == total and set(emails.values()) == {1}
    assert Counter(row["outcome"] for row in await ledger(stack, cid)) == {"SENT": total}
    assert body["unknownCount"] == 0 and body["sentCount"] == total


async def long_poll_started(stack: Stack, campaign_id: str) -> bool:
    """Whether the campaign's wait for events (`send_triggered`) is running on a worker now."""
    desc = await stack.client.get_workflow_handle(f"campaign-{campaign_id}").describe()
    started = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    return any(
        a.activity_type.name == "send_triggered" and a.state == started
        for a in desc.raw_description.pending_activities
    )


async def test_sigterm_ends_a_triggered_campaigns_wait_for_events_at_once(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    # A wait for events far longer than the worker's graceful stop (30 s): without the early end the
    # worker would hold its stop for that long, then cancel the wait.
    stack = await make_stack(worker=False, trigger_poll_seconds=120)
    audience = await make_audience(stack.engine, stack.tenant, 3)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_triggered_campaign(stack, email_t)
    now = datetime.now(UTC).isoformat()

    async def post_event(i: int) -> None:
        event = {
            "id": f"up-{i}",
            "type": "tier.changed",
            "tenantId": stack.tenant,
            "customerId": audience.customers[i]["id"],
            "occurredAt": now,
        }
        r = await stack.call("POST", "/events", json=event)
        assert r.status_code == 202, r.text

    async def until(what: str, ok: Callable[[], Awaitable[bool]], log: Path) -> None:
        deadline = asyncio.get_running_loop().time() + 60
        while not await ok():
            assert asyncio.get_running_loop().time() < deadline, f"{what}: {_tail(log)}"
            await asyncio.sleep(0.05)

    async def sent_at_least(n: int) -> bool:
        return sum(received_emails(stack, audience).values()) >= n

    first = start_worker(stack, tmp_path / "worker1.log")
    second = None
    try:
        assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
        await post_event(0)
        log1 = tmp_path / "worker1.log"
        await until("the first event was never sent", lambda: sent_at_least(1), log1)
        await until("no wait for events began", lambda: long_poll_started(stack, cid), log1)

        first.send_signal(signal.SIGTERM)
        started = time.monotonic()
        returncode = await asyncio.to_thread(first.wait, 60)
        stopped_in = time.monotonic() - started
        log = (tmp_path / "worker1.log").read_text()
        assert returncode == 0 and "Traceback" not in log, log[-3000:]
        assert stopped_in < 10, f"the worker took {stopped_in:.1f} s to stop"

        # The campaign waits on: the next worker takes its events.
        second = start_worker(stack, tmp_path / "worker2.log")
        await post_event(1)
        await until("the second event was never sent", lambda: sent_at_least(2), tmp_path / "worker2.log")
    finally:
        kill(first)
        kill(second)
    assert received_emails(stack, audience) == {audience.customers[i]["email"]: 1 for i in (0, 1)}
    body = (await stack.call("GET", f"/campaigns/{cid}")).json()
    assert body["status"] == "ACTIVE", body


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


# ---- the API --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_api(stack: Stack, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`uvicorn api.main:app` as deployed (its own listening socket), against the test stack."""
    s = stack.settings
    env = {
        **os.environ,
        "CAMPAIGNS_ENVIRONMENT": s.environment,
        "CAMPAIGNS_DATABASE_URL": str(s.database_url),
        "CAMPAIGNS_TEMPORAL_ADDRESS": s.temporal_address,
        "CAMPAIGNS_TASK_QUEUE": s.task_queue,
        "CAMPAIGNS_JWT_SECRET": s.jwt_secret,
    }
    listen = ["--host", "127.0.0.1", "--port", str(port), "--timeout-graceful-shutdown", "20"]
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:app", *listen],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def wait_until_healthy(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)


def _receive_queue(server_port: int, client_port: int) -> int | None:
    """Bytes the kernel holds for the server's end of this connection, not yet read by the server
    (the rx_queue column of /proc/net/tcp); None while the connection is not listed."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return int(fields[4].split(":")[1], 16)
    return None


async def until_read_by_server(server_port: int, client_port: int, timeout: float = 20) -> None:
    """Until uvicorn has read what was sent on the connection: from then on the request is its own
    (parsed and handed to the app), not bytes waiting in a socket it may never read."""
    deadline = asyncio.get_running_loop().time() + timeout
    while _receive_queue(server_port, client_port) != 0:
        assert asyncio.get_running_loop().time() < deadline, "the server never read the request"
        await asyncio.sleep(0.02)


async def until_refused(port: int, timeout: float = 20) -> None:
    """Until a new connection to the port is refused (the server closed its listening socket)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _, late = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return
        late.close()
        assert asyncio.get_running_loop().time() < deadline, (
            "uvicorn still accepted connections after SIGTERM"
        )
        await asyncio.sleep(0.05)


async def test_sigterm_to_the_api_drains_requests_in_flight(make_stack: StackFactory, tmp_path: Path) -> None:
    stack = await make_stack(worker=False)
    port = free_port()
    log = tmp_path / "api.log"
    api = start_api(stack, port, log)
    try:
        await asyncio.to_thread(wait_until_healthy, port, api, log)
        body = json.dumps(
            {"tenantId": stack.tenant, "externalId": "in-flight", "email": "in.flight@example.com"}
        ).encode()
        head = (
            "POST /customers HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: {stack.headers()['Authorization']}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # The request is in flight: headers and half of the body are in, the rest still to come.
        writer.write(head + body[:10])
        await writer.drain()
        await until_read_by_server(port, writer.get_extra_info("sockname")[1])
        api.send_signal(signal.SIGTERM)
        # New connections are refused while the old one drains.
        await until_refused(port)
        assert api.poll() is None, "uvicorn exited with a request in flight"
        writer.write(body[10:])
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=30)
        writer.close()
        status_line = response.split(b"\r\n", 1)[0]
        assert status_line == b"HTTP/1.1 201 Created", response[:500]
        # uvicorn re-raises the signal once drained, so the exit status says "terminated by SIGTERM".
        assert await asyncio.to_thread(api.wait, 30) in (0, -signal.SIGTERM), log.read_text()[-3000:]
        assert "Application shutdown complete" in log.read_text()
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()
    async with stack.engine.connect() as conn:
        query = select(func.count()).select_from(Customer).where(Customer.tenant_id == stack.tenant)
        assert (await conn.execute(query)).scalar_one() == 1
