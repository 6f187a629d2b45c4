"""Driving a fault case: progress as the sinks see it, and a stack on a Temporal server of its own."""

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.deps import AppState
from api.lifecycle import CampaignControl
from api.main import create_app
from core.settings import Settings
from devstack.sinks import SmsSink, SmtpSink
from tests.conftest import Stack, make_settings
from tests.factories import Audience


def received(stack: Stack, audience: Audience) -> int:
    """Messages the sinks hold for this audience (both channels)."""
    emails = stack.smtp.counts({c["email"] for c in audience.customers if c["email"]})
    sms = stack.sms.counts({c["phone"] for c in audience.customers if c["phone"]})
    return sum(emails.values()) + sum(sms.values())


def expected_messages(audience: Audience) -> int:
    return len(audience.emails()) + len(audience.phones())


def unanswered_bound(settings: Settings) -> dict[str, int]:
    """Messages per channel a killed worker may leave claimed without an answer: each provider slot
    holds at most the message on the wire and one claimed ahead (docs/architecture.md "The crash
    window"), and with an idempotent SMS provider in-flight SMS are posted again, never UNKNOWN.
    The one place this bound is written; a case that allows UNKNOWN multiplies it by its crashes."""
    sms = 0 if settings.sms_idempotent else 2 * settings.sms_in_flight
    return {"EMAIL": 2 * settings.smtp_pool_size, "SMS": sms}


def in_flight(settings: Settings) -> int:
    """Both channels' bound of `unanswered_bound`, for one crash."""
    return sum(unanswered_bound(settings).values())


async def until_received(
    stack: Stack,
    audience: Audience,
    count: int,
    *,
    timeout: float = 120,
    worker: subprocess.Popen[bytes] | None = None,
) -> int:
    """Wait until the sinks hold `count` messages of this audience; returns the count reached."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (now := received(stack, audience)) < count:
        assert worker is None or worker.poll() is None, "the worker died by itself"
        assert loop.time() < deadline, f"stuck at {now} of {count} messages"
        await asyncio.sleep(0.02)
    return now


@asynccontextmanager
async def stack_on(
    client: Client,
    database_url: str,
    engine: AsyncEngine,
    smtp: SmtpSink,
    sms: SmsSink,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    """A Stack (API over ASGI, no in-process worker) on a Temporal client of the test's own."""
    settings = make_settings(database_url, smtp, sms, client, **overrides)
    control = CampaignControl(client, settings.task_queue, batches_per_run=settings.batches_per_run)
    app = create_app(settings, AppState(settings=settings, engine=engine, control=control))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as api:
        suffix = uuid.uuid4().hex[:8]
        yield Stack(
            settings=settings,
            client=client,
            engine=engine,
            api=api,
            tenant=f"tenant_{suffix}",
            other_tenant=f"tenant_other_{suffix}",
            smtp=smtp,
            sms=sms,
            task_queue=settings.task_queue,
            env=WorkflowEnvironment.from_client(client),
        )
