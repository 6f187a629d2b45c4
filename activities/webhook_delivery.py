"""deliver_webhooks: one step of an endpoint's delivery loop (workflows.webhook_delivery).

Each attempt reads the endpoint afresh (a PATCH or a rotated secret applies at the next attempt),
then sends, in this order of preference: dead letters queued for replay, else the next events
after the endpoint's position. One request carries the batch as `{"events": [...]}`, signed with
the Standard Webhooks scheme (core.webhook_signing). The position moves (and replays are marked)
only after a 2xx, so a crash or a timeout after the receiver answered means the same events are
sent again: delivery is at least once, and receivers dedupe on each event's `id`.

A failed attempt is recorded and raised, and Temporal retries it with backoff. Once the endpoint
has been failing (no 2xx) for `CAMPAIGNS_WEBHOOK_DEAD_LETTER_DAYS`, a failed batch is moved to the
dead letters instead (each event has had at least one attempt) and the loop goes on with the next.

The HTTP client follows no redirect (a 3xx is a failure: a receiver could otherwise point the
service anywhere), reads at most a few KiB of any answer, and connects only to addresses the SSRF
guard accepts, checked on every connection because DNS may have changed since the URL was saved.
"""

import json
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.secrets import unseal
from core.settings import Settings
from core.ssrf import UnsafeTargetError, check_addresses, check_host, literal_address, url_host
from core.webhook_signing import signature_header
from db.webhook_endpoints import EndpointRow, endpoint_by_id, move_position, record_delivered, record_failure
from db.webhook_outbox import (
    DeadLetter,
    OutboxEvent,
    Position,
    bury,
    mark_replayed,
    next_batch,
    prune_outbox,
    replay_batch,
)
from workflows.webhook_delivery import DELIVER_ACTIVITY, DeliverInput, DeliveryResult, DeliveryState

log = logging.getLogger("campaigns.webhooks")

ANSWER_BYTES = 4096  # of a receiver's answer, kept for `lastError`
PRUNE_EVERY_SECONDS = 600.0
PRUNE_ROWS = 10_000
USER_AGENT = "campaigns-webhooks/1"


class GuardedResolver(AbstractResolver):
    """The system resolver, refusing names that resolve to addresses the SSRF guard rejects."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        check_addresses(host, [r["host"] for r in results], self._allow_private)
        return results

    async def close(self) -> None:
        await self._inner.close()


def event_json(event: OutboxEvent) -> dict[str, Any]:
    """An event as receivers get it (docs/outbound-webhooks.md "Events")."""
    return {
        "id": str(event.id),
        "type": event.type,
        "createdAt": event.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "tenantId": event.tenant_id,
        "campaignId": event.campaign_id,
        "data": event.payload,
    }


@dataclass(frozen=True)
class Attempt:
    """What one request carries: the events (as sent) and the request's message id."""

    msg_id: str
    letters: list[DeadLetter]


def signing_secrets(endpoint: EndpointRow, now: datetime) -> list[str]:
    """The current secret, and the previous one while it is still honoured after a rotation."""
    found = [unseal(endpoint.secret)]
    if endpoint.previous_secret and endpoint.previous_secret_until and endpoint.previous_secret_until > now:
        found.append(unseal(endpoint.previous_secret))
    return found


class WebhookDeliveryActivities:
    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self._settings = settings
        self._engine = engine
        self._last_prune = 0.0

    @activity.defn(name=DELIVER_ACTIVITY)
    async def deliver_webhooks(self, inp: DeliverInput) -> DeliveryResult:
        size = self._settings.webhook_batch_size
        async with self._engine.connect() as conn:  # released before any request is sent
            endpoint = await endpoint_by_id(conn, inp.endpoint_id)
            if endpoint is None:
                return DeliveryResult(state=DeliveryState.GONE)
            if not endpoint.enabled:
                return DeliveryResult(state=DeliveryState.DISABLED)
            replays = await replay_batch(conn, endpoint.id, size)
            batch = None
            if not replays:
                batch = await next_batch(
                    conn, endpoint.tenant_id, endpoint.event_types, endpoint.position, size
                )
        if replays:
            msg_id = f"msg_{endpoint.id}_r{replays[0].event_id}_{replays[-1].event_id}"
            return await self._attempt(endpoint, Attempt(msg_id, replays), None)
        assert batch is not None
        if not batch.events:
            if batch.next_position is not None:
                async with self._engine.begin() as conn:
                    await move_position(conn, endpoint.id, endpoint.position, batch.next_position)
            await self._prune()
            return DeliveryResult(state=DeliveryState.IDLE)
        letters = [DeadLetter(e.id, event_json(e), e.created_at) for e in batch.events]
        msg_id = f"msg_{endpoint.id}_{letters[0].event_id}_{letters[-1].event_id}"
        return await self._attempt(endpoint, Attempt(msg_id, letters), batch.next_position)

    async def _attempt(self, endpoint: EndpointRow, attempt: Attempt, to: Position | None) -> DeliveryResult:
        """Send one batch; on a 2xx record it (`to`: the position to move to, None for replays)."""
        error = await self._post(endpoint, attempt)
        now = datetime.now(UTC)
        ids = [d.event_id for d in attempt.letters]
        if error is None:
            async with self._engine.begin() as conn:
                await record_delivered(conn, endpoint.id, endpoint.position, to, len(ids), now)
                if to is None:
                    await mark_replayed(conn, endpoint.id, ids, now)
            # A short batch of new events was all there was; replays may be followed by new events.
            more = to is None or len(ids) >= self._settings.webhook_batch_size
            state = DeliveryState.MORE if more else DeliveryState.IDLE
            return DeliveryResult(state=state, delivered=len(ids))
        async with self._engine.begin() as conn:
            failing_since = await record_failure(conn, endpoint.id, error, now)
            dead_after = timedelta(days=self._settings.webhook_dead_letter_days)
            if failing_since is None or now - failing_since < dead_after:
                failing = None
            else:
                await bury(conn, endpoint.id, attempt.letters, error)
                if to is not None:
                    await move_position(conn, endpoint.id, endpoint.position, to)
                failing = len(ids)
        if failing is None:
            raise ApplicationError(f"endpoint {endpoint.id}: {error}", type="WebhookDeliveryFailed")
        log.warning("endpoint %s: %d events dead-lettered after %s", endpoint.id, failing, error)
        return DeliveryResult(state=DeliveryState.MORE, dead_lettered=failing)

    async def _post(self, endpoint: EndpointRow, attempt: Attempt) -> str | None:
        """POST the batch; None on a 2xx, else why not (never raises for the receiver's faults)."""
        settings = self._settings
        body = json.dumps({"events": [d.event for d in attempt.letters]}, separators=(",", ":")).encode()
        timestamp = int(time.time())
        try:
            host = url_host(endpoint.url, settings.webhook_allow_http)
            if literal_address(host) is not None:  # no resolver runs for a literal address
                check_host(host, settings.webhook_allow_private)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Webhook-Id": attempt.msg_id,
                "Webhook-Timestamp": str(timestamp),
                "Webhook-Signature": signature_header(
                    signing_secrets(endpoint, datetime.now(UTC)), attempt.msg_id, timestamp, body
                ),
            }
            return await self._send(endpoint.url, headers, body)
        except UnsafeTargetError as err:
            return f"refused: {err}"
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            return f"{type(err).__name__}: {err}"[:500]

    async def _send(self, url: str, headers: dict[str, str], body: bytes) -> str | None:
        settings = self._settings
        resolver = GuardedResolver(settings.webhook_allow_private)
        connector = aiohttp.TCPConnector(resolver=resolver, force_close=True)
        timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout_seconds)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                answer = await response.content.read(ANSWER_BYTES)
                if 200 <= response.status < 300:
                    return None
                text = answer.decode("utf-8", "replace").strip()
                return f"HTTP {response.status}" + (f": {text[:200]}" if text else "")

    async def _prune(self) -> None:
        """Now and then, forget outbox rows older than any endpoint can still need."""
        if time.monotonic() - self._last_prune < PRUNE_EVERY_SECONDS:
            return
        self._last_prune = time.monotonic()
        keep = timedelta(days=2 * self._settings.webhook_dead_letter_days + 1)
        async with self._engine.begin() as conn:
            await prune_outbox(conn, datetime.now(UTC) - keep, PRUNE_ROWS)


def webhook_activities(settings: Settings, engine: AsyncEngine) -> Sequence[Any]:
    """The callables a worker registers for outbound webhooks."""
    return [WebhookDeliveryActivities(settings, engine).deliver_webhooks]
