"""The rate limits of provider accounts, as one worker process sees them (README "Rate limits").

Every worker draws on the same buckets in Postgres (db.rate_limits): an account's rate and day
limit hold whatever the number of workers, and the tenants sending on an account split it by
weight. A worker asks for a few tokens at a time (about GRANT_SECONDS of its lane's share), so it
makes a handful of round trips a second per lane, not one per message, and it only ever spends
tokens the database granted: it never runs ahead of the shared bucket. Tokens it could not spend
within TOKEN_TTL lapse.

A throttled message waits for its token; it is never dropped or failed for being throttled. The
wait stops when the page is halted (the `wait` callback says so) or the activity is cancelled, and
it never blocks the event loop, so heartbeats go on. A slot waits for its token holding its
provider connection, so one tenant's pages may hold only a part of a channel's slots in a worker
(`slot`): another tenant's page always finds one free. An account without limits costs nothing:
no lock, no round trip, every slot.
"""

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.enums import Channel
from core.settings import AccountRateLimit
from db.rate_limits import Grant, grant

log = logging.getLogger(__name__)

# Tokens asked per round trip: what this worker spends in this many seconds, and never more than
# that much of the lane's share. The batch starts at one, doubles while a batch is spent within
# GRANT_SECONDS, and halves when tokens lapse, so a page ending or a slow lane wastes little of
# a day's limit (a granted token counts against the day whether or not it is spent).
GRANT_SECONDS = 0.1
MAX_GRANT = 256
# Granted tokens not spent within this long lapse, so a worker never bursts with stale tokens.
TOKEN_TTL = 1.0
# While it waits, a lane asks again at least this often: it stays counted among the lanes sharing
# the account (db.rate_limits.ACTIVE_SECONDS), so a slow lane keeps its share.
MAX_POLL_SECONDS = 0.5
MIN_POLL_SECONDS = 0.005
# When the account's day is used up the lane has nothing to keep: it looks again this often.
DAY_POLL_SECONDS = 5.0
# The database was away: look again after this long.
RETRY_SECONDS = 0.5
# A rate-limited lane holds at most slots // LANE_SLOT_DIVISOR of a channel's slots (SMTP
# connections, SMS request slots) in one worker: waiting for tokens on a slot must not keep
# other tenants' pages from leasing one.
LANE_SLOT_DIVISOR = 4

# Sleeps up to the given seconds; False when the page was halted meanwhile (stop waiting).
Wait = Callable[[float], Awaitable[bool]]


def account_of(channel: Channel) -> str:
    """The provider account a channel sends through: one per channel today (`email`, `sms`), named
    as CAMPAIGNS_RATE_LIMITS names them."""
    return channel.value.lower()


async def _sleep(seconds: float) -> bool:
    await asyncio.sleep(seconds)
    return True


@dataclass
class _Lane:
    """One (account, tenant) lane in this worker: the tokens it holds and its slot gate."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tokens: int = 0
    batch: int = 1
    granted_at: float = 0.0
    expires: float = 0.0
    share: float | None = None
    day_exhausted: bool = False
    slots: asyncio.Queue[None] | None = None


class Throttle:
    """Per worker process: `acquire` a token of an account for a tenant before each message."""

    def __init__(self, engine: AsyncEngine, limits: Mapping[str, AccountRateLimit]) -> None:
        self._engine = engine
        self._limits = {k: v for k, v in limits.items() if v.per_second is not None or v.per_day is not None}
        self._lanes: dict[tuple[str, str], _Lane] = {}

    def limited(self, account: str) -> bool:
        """Whether the account has a limit (if not, `acquire` returns at once)."""
        return account in self._limits

    def rate(self, account: str, tenant_id: str) -> float | None:
        """The tenant's current share of the account, messages per second across all workers
        (None: no per-second limit, or nothing asked yet); 0 while the account's day is used up.
        What a campaign's expected finish time is computed from."""
        lane = self._lanes.get((account, tenant_id))
        if lane is None:
            return None
        return 0.0 if lane.day_exhausted else lane.share

    def ready(self, account: str, tenant_id: str) -> bool:
        """Whether `acquire` would return at once (a token at hand, or no limit)."""
        if not self.limited(account):
            return True
        lane = self._lanes.get((account, tenant_id))
        return lane is not None and lane.tokens > 0 and asyncio.get_running_loop().time() < lane.expires

    def slot_limit(self, account: str, slots: int) -> int:
        """How many of a channel's `slots` one tenant's page may use on the account in this worker."""
        return max(1, slots // LANE_SLOT_DIVISOR) if self.limited(account) else slots

    @contextlib.asynccontextmanager
    async def slot(self, account: str, tenant_id: str, slots: int) -> AsyncIterator[None]:
        """Hold one of the tenant's `slot_limit` slots on the account in this worker (FIFO), so
        pages of one tenant waiting for its tokens leave the channel's other slots to others."""
        if not self.limited(account):
            yield
            return
        lane = self._lane(account, tenant_id)
        if lane.slots is None:
            lane.slots = asyncio.Queue()
            for _ in range(self.slot_limit(account, slots)):
                lane.slots.put_nowait(None)
        gate = lane.slots
        await gate.get()
        try:
            yield
        finally:
            gate.put_nowait(None)

    async def acquire(self, account: str, tenant_id: str, weight: float = 1.0, wait: Wait = _sleep) -> bool:
        """Wait for one token of the account for the tenant; True once it is granted, False when
        `wait` says the page was halted first. Raises CancelledError when cancelled."""
        limit = self._limits.get(account)
        if limit is None:
            return True
        lane = self._lane(account, tenant_id)
        loop = asyncio.get_running_loop()
        async with lane.lock:
            while True:
                now = loop.time()
                if lane.tokens > 0 and now < lane.expires:
                    lane.tokens -= 1
                    if lane.tokens == 0 and now - lane.granted_at < GRANT_SECONDS:
                        lane.batch = min(MAX_GRANT, lane.batch * 2)
                    return True
                if lane.tokens > 0:  # they lapsed: this worker asked for more than it sends
                    lane.tokens, lane.batch = 0, max(1, lane.batch // 2)
                pause = await self._refill(lane, account, tenant_id, weight, limit)
                if lane.tokens == 0 and not await wait(pause):
                    return False

    async def _refill(
        self, lane: _Lane, account: str, tenant_id: str, weight: float, limit: AccountRateLimit
    ) -> float:
        """Ask the database for a few tokens; how long to wait before asking again if none came."""
        share = lane.share if lane.share is not None else limit.per_second
        want = lane.batch if share is None else min(lane.batch, max(1, math.ceil(share * GRANT_SECONDS)))
        asked = asyncio.get_running_loop().time()
        try:
            async with self._engine.begin() as conn:
                got: Grant = await grant(
                    conn,
                    account=account,
                    tenant_id=tenant_id,
                    want=want,
                    weight=weight,
                    per_second=limit.per_second,
                    per_day=limit.per_day,
                )
        except DBAPIError as err:  # the database is away a moment: the message waits, nothing fails
            log.warning("asking for rate-limit tokens failed: %s", err.orig)
            lane.tokens = 0
            return RETRY_SECONDS
        lane.tokens, lane.granted_at, lane.expires = got.granted, asked, asked + TOKEN_TTL
        lane.share, lane.day_exhausted = got.share, got.day_exhausted and got.granted == 0
        if lane.day_exhausted:
            return min(DAY_POLL_SECONDS, max(got.wait_seconds, MIN_POLL_SECONDS))
        return min(MAX_POLL_SECONDS, max(got.wait_seconds, MIN_POLL_SECONDS))

    def _lane(self, account: str, tenant_id: str) -> _Lane:
        lane = self._lanes.get((account, tenant_id))
        if lane is None:
            lane = self._lanes[(account, tenant_id)] = _Lane()
        return lane
