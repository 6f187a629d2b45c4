"""A send page: the pipeline's parts assembled for one batch of messages, with the page's watchers.

Every kind of send (a segment page, a trigger queue page, a journey send, an operator's resend)
builds a `SendPage` from its source's messages; they differ only in where the messages come from
and in how a claim is written (a new row, or an existing UNKNOWN row flipped).

A page also stops itself after `CAMPAIGNS_PAGE_TIME_BUDGET` seconds of sending, exactly as a pause
stops it: no new message starts, the ones on the wire finish and are recorded, the claims held ahead
are released. Every caller treats a halted page as unfinished: a segment, trigger or sweep page
returns incomplete and its workflow sends it again, a resend page reads its rows again from the same
cursor; either way the new activity finds every decided message in the ledger. A page's activity
times out after 15 minutes, and a page slowed by a provider account's rate limit (1 SMS a second for
2,000 recipients is 33 minutes) would otherwise be timed out mid-message, and its in-flight messages
could end UNKNOWN.

For the same reason a page stops itself when its worker is told to stop (SIGTERM, a deploy) and
has not finished `SHUTDOWN_WIND_DOWN` seconds before the worker's grace
(`CAMPAIGNS_SHUTDOWN_GRACE_SECONDS`) runs out: the worker would then cancel the activity with
messages on the wire, and they would end UNKNOWN. A page of a few seconds still finishes; a page a
rate limit slows is sent on by the next worker, and nothing it held is in doubt.
"""

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from activities.send.deliverers import Deliverer, EmailDeliverer, SmsDeliverer
from activities.send.identity import platform_sender, resolve_sender, sms_client, smtp_pool
from activities.send.model import Content, Message
from activities.send.pipeline import Pipeline
from activities.send.renderer import Renderer
from activities.send.writer import LedgerWriter
from core.constants import ERR_CAMPAIGN_INVALID
from core.enums import Channel
from core.policy import AutoPause
from db.campaign_content import send_content
from db.ledger.runs import halt_epoch

log = logging.getLogger(__name__)

HALT_POLL_SECONDS = 0.1
HEARTBEAT_SECONDS = 1.0
# What a stopping worker's grace keeps for the messages on the wire once a page halts: against a
# provider that answers, milliseconds; one that hangs longer is cancelled with the grace, as before.
SHUTDOWN_WIND_DOWN = 10.0


@dataclass(frozen=True)
class HaltWatch:
    """Where pause and cancel reach a page: the run whose halt epoch it polls, and its own epoch."""

    run_id: str
    epoch: int


async def load_content(deps: ActivityDeps, *, campaign_id: str, tenant_id: str, run_id: str) -> Content:
    """The campaign's channels and the template versions the run pinned (db.template_versions);
    an EMAIL template without `text` gets a text part derived from its html."""
    async with deps.engine.connect() as conn:
        content = await send_content(conn, campaign_id=campaign_id, tenant_id=tenant_id, run_id=run_id)
    if content is None:
        raise ApplicationError("campaign not found", type=ERR_CAMPAIGN_INVALID, non_retryable=True)
    if content.missing is not None:
        raise ApplicationError(
            f"the {content.missing} template of the campaign no longer exists",
            type=ERR_CAMPAIGN_INVALID,
            non_retryable=True,
        )
    sender = await resolve_sender(deps, campaign_id, tenant_id, content.channels)
    return Content(
        content.channels,
        content.templates[Channel.EMAIL],
        content.templates[Channel.SMS],
        content.variants,
        sender=sender,
    )


class SendPage:
    """Send `messages` through the pipeline; `halted`, `provider_down` and `sent` say how it went."""

    def __init__(
        self,
        deps: ActivityDeps,
        *,
        campaign_id: str,
        tenant_id: str,
        content: Content,
        halt: HaltWatch | None,
        existing_rows: bool = False,
        rate_weight: float = 1.0,
    ) -> None:
        self._deps = deps
        self._halt = halt
        self._halt_conn: AsyncConnection | None = None
        # Messages of this page that the gates held back (quiet hours), for the page's result.
        self.held = 0
        self.auto_pause: AutoPause | None = None
        # An A/B test's remainder was held for the winner.
        self.awaiting_winner = False
        self.writer = LedgerWriter(
            deps.engine, campaign_id=campaign_id, tenant_id=tenant_id, existing_rows=existing_rows
        )
        sender = content.sender or platform_sender(deps.settings)
        deliverers: list[Deliverer] = [
            EmailDeliverer(
                smtp_pool(deps, sender),
                deps.settings,
                campaign_id=campaign_id,
                tenant_id=tenant_id,
                throttle=deps.throttle,
                weight=rate_weight,
                sender=sender,
            ),
            SmsDeliverer(
                sms_client(deps, sender),
                deps.settings,
                tenant_id=tenant_id,
                throttle=deps.throttle,
                weight=rate_weight,
                account=sender.account_name(Channel.SMS),
            ),
        ]
        self.pipeline = Pipeline(
            tenant_id=tenant_id,
            renderer=Renderer(deps.render_pool, tenant_id, content),
            deliverers=deliverers,
            writer=self.writer,
            chunk=deps.settings.send_concurrency,
        )

    @property
    def halted(self) -> bool:
        return self.pipeline.halted.is_set()

    @property
    def provider_down(self) -> str | None:
        return self.pipeline.provider_down

    @property
    def sent(self) -> int:
        return self.pipeline.sent

    async def halt_requested(self) -> bool:
        """Whether pause or cancel reached this page's run. Polled every HALT_POLL_SECONDS on a
        connection the page holds (no pool check-out and pre-ping ten times a second)."""
        if self._halt is None:
            return False
        try:
            if self._halt_conn is None:
                # Held from checkout on, so a cut before the first poll still closes it below.
                self._halt_conn = await self._deps.engine.connect()
                await self._halt_conn.execution_options(isolation_level="AUTOCOMMIT")  # on this connection
            epoch = await halt_epoch(self._halt_conn, self._halt.run_id)
        except DBAPIError:
            await self._close_halt_conn()  # a lost connection: the next poll opens a new one
            raise
        return epoch is not None and epoch >= self._halt.epoch

    async def _close_halt_conn(self) -> None:
        conn, self._halt_conn = self._halt_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                await conn.close()

    async def send(self, messages: Sequence[Message]) -> None:
        """Send the messages (nothing when the run was halted before this attempt began)."""
        if await self.halt_requested():
            self.pipeline.halted.set()
        watchers = [
            asyncio.create_task(self._watch_halt()),
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._watch_time()),
            asyncio.create_task(self._watch_shutdown()),
        ]
        try:
            if messages and not self.halted:
                await self.pipeline.run(messages)
        finally:
            for task in watchers:
                task.cancel()
            for task in watchers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._close_halt_conn()
            await self.writer.close()

    def raise_if_provider_down(self) -> None:
        """Fail the attempt (Temporal retries it with the workflow's backoff) when something was
        not sent: the provider was unreachable, or deferred some messages."""
        if self.provider_down is not None:
            raise ApplicationError(f"provider unavailable: {self.provider_down}")
        if self.pipeline.deferred is not None:
            raise ApplicationError(f"provider deferred messages: {self.pipeline.deferred}")

    async def _watch_halt(self) -> None:
        if self._halt is None:
            return
        while not self.pipeline.halted.is_set():
            try:
                if await self.halt_requested():
                    self.pipeline.halted.set()
                    return
            except DBAPIError as err:  # the database is away a moment: look again at the next poll
                log.warning("polling the halt epoch failed: %s", err.orig)
            await asyncio.sleep(HALT_POLL_SECONDS)

    async def _watch_time(self) -> None:
        """Halt the page once it has sent for its time budget (see the module's docstring)."""
        budget = self._deps.settings.page_time_budget
        await asyncio.sleep(budget)
        self._stop_early(f"a page is out of time after {budget:.0f} s")

    async def _watch_shutdown(self) -> None:
        """Halt the page when its worker stops and the page is not done in time (module docstring)."""
        if not activity.in_activity():
            return
        await activity.wait_for_worker_shutdown()
        left = self._deps.settings.shutdown_grace_seconds - SHUTDOWN_WIND_DOWN
        await asyncio.sleep(max(0.0, left))
        self._stop_early("the worker is stopping")

    def _stop_early(self, why: str) -> None:
        """Halt the page as a pause would; its caller sends the rest as a new activity."""
        if not self.pipeline.halted.is_set():
            log.info("%s: the rest of the page goes as a new activity", why)
            self.pipeline.halted.set()

    async def _heartbeat(self) -> None:
        if not activity.in_activity():
            return
        while True:
            activity.heartbeat(self.sent)
            await asyncio.sleep(HEARTBEAT_SECONDS)
