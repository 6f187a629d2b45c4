"""The ledger writer: claims and answers of every slot of a page, group-committed.

Each slot hands the writer one step at a time: the answer of the message it just sent (or the
release of a claim nothing was sent for) and the claim of the message it takes next. A step
commits on a free lane (a connection of the writer's own); steps that arrive while every lane has
a commit in the database wait for the next free one, so under load one statement carries the
steps of several slots. A step commits at once unless its channel lets it wait for the other
slots' steps ("Gathering" below), and never waits longer than that.

Why lanes: a slot sends its next message only once that message's claim has committed, so when a
send is shorter than a step's latency the page runs at the pace of its steps. With one lane a step
waits for the commit in flight and then its own: measured in the running system (20,000 SMS), a
commit took 3.6 ms (1.2 ms of it in the executor, the rest its WAL flush and the two shared cores'
scheduling), a slot waited 4.6 ms for its step beyond the 2.8 ms of its own send, and the page ran
at 16 slots / 7.3 ms. Steps of one page never depend on each other (a slot has one step in flight
at a time, and slots hold different messages), so two commits may be in flight at once; the
claim-ahead rule, and with it the crash window, is the same. The page asks for as many lanes as its
channels gain from (Deliverer.commit_lanes): an SMS is one request, shorter than a commit, so an
SMS page takes two (15,000-SMS A/B, four pairs: +18 % SMS/s, -10 % CPU per SMS); an SMTP
transaction is four round trips and outlasts a step even behind another commit, so a second lane
only splits the group commits into smaller ones (three pairs of 15,000 emails: -22 % emails/s,
+20 % CPU per email).

Gathering. Postgres's CPU for a step is about a fixed cost per commit (executor start-up of the
step's five writes, the commit and its WAL flush, the round trip) plus a cost per message:
bench.ledger_bench on this box, 16,000 messages, gave 426 / 152 / 112 / 79 / 72 µs per message
at 1 / 4 / 8 / 16 / 32 messages per commit, about 370 µs per commit and 56 per message. An email
slot's step runs while its message is on the wire, which takes longer than the step, so a step of
such a channel may wait a little (Deliverer.gather_seconds) for the other slots' steps and commit
with them: the lane commits once every slot that is sending has a step queued, or when the first
queued step has waited its time, whichever comes first. A step that may not wait (an SMS, whose
slot waits on it; a first claim; the last answer) commits the group at once. The claim-ahead rule
and the crash window do not change: a slot still holds at most one claim ahead. Measured in the
running system (20,000 emails, two pairs): commits 2,959 / 2,572 -> 1,337 / 1,318 and CPU per email
0.543 / 0.500 -> 0.453 / 0.452 ms at the same emails/s; a wait of 4 ms put slots in lockstep (-20 %
emails/s), and for SMS, whose groups are already near the 16 slots, waiting only slowed the page.

Every statement of a step is idempotent (db.ledger.sends.write_step), so a step whose connection
is lost is replayed on a fresh connection instead of failing the page: a connection cut must not
turn answers the writer holds into UNKNOWN rows.
"""

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from activities.send.model import Answer, Outgoing
from core.enums import Outcome
from core.ids import new_id
from db.ledger.outcomes import mark_email_bounced
from db.ledger.sends import AnswerRow, FinalRow, insert_finals, prepare_writer, write_step

log = logging.getLogger(__name__)

# Attempts of one commit when its connection is lost meanwhile (Postgres restarted, backend cut).
RECORD_ATTEMPTS = 4
# The most commits of one page in flight at once, each on a connection of its own (see above).
MAX_LANES = 2


def _resolve(future: "asyncio.Future[None]") -> None:
    if not future.done():
        future.set_result(None)


@dataclass
class _Lane:
    """A connection of the writer's own and the task committing on it, if any."""

    conn: AsyncConnection | None = None
    task: "asyncio.Task[None] | None" = None

    def idle(self) -> bool:
        return self.task is None or self.task.done()


@dataclass
class _Step:
    answers: Sequence[Answer]
    claim: Outgoing | None
    done: "asyncio.Future[bool]"
    due: float  # the loop's time by which its commit must start ("Gathering")


class LedgerWriter:
    """Group commits of one page's steps on connections of its own, `lanes` of them at once (no
    pool check-out, no pre-ping per step; psycopg prepares the one statement after a few executions).

    `existing_rows`: claims flip existing UNKNOWN rows (a resend) instead of inserting rows."""

    def __init__(
        self, engine: AsyncEngine, *, campaign_id: str, tenant_id: str, existing_rows: bool = False
    ) -> None:
        self._engine = engine
        self._campaign = campaign_id
        self._tenant = tenant_id
        self._existing = existing_rows
        self._queue: list[_Step] = []
        self._lanes = [_Lane() for _ in range(MAX_LANES)]
        self._open = 1  # lanes in use (use_lanes)
        # The lane about to take what waits (no other lane is started meanwhile), if any.
        self._gathering: _Lane | None = None
        self._senders = 0  # slots sending now (`sending`): a full group has a step of each
        # Lanes waiting for a fuller group (two may: one that has just committed loops back to
        # the queue while another gathers it), each on a future of its own.
        self._waiting: set[asyncio.Future[None]] = set()

    async def step(
        self, *, answers: Sequence[Answer] = (), claim: Outgoing | None = None, wait: float = 0.0
    ) -> bool:
        """Record `answers` (an answer without outcome releases its claim) and claim `claim` in the
        next commit; True when the claim was won (a message another attempt holds, or already
        decided, is not). The commit may wait up to `wait` seconds for other slots' steps."""
        return await self.submit(answers=answers, claim=claim, wait=wait)

    def submit(
        self, *, answers: Sequence[Answer] = (), claim: Outgoing | None = None, wait: float = 0.0
    ) -> "asyncio.Future[bool]":
        """`step` without its coroutine: queue the step and return the future of its verdict, so a
        slot can take a step while its message is on the wire without a task of its own per
        message (activities/send/pipeline.py). Cancelling the future does not withdraw the step (it
        commits with its group), as when a task awaiting `step` is cancelled: its verdict goes unread."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        if not answers and claim is None:
            done.set_result(False)
            return done
        self._queue.append(_Step(answers, claim, done, loop.time() + wait))
        if wait <= 0 or len(self._queue) >= self._senders:
            self._wake()
        if self._gathering is None or self._gathering.idle():
            lane = next((lane for lane in self._lanes[: self._open] if lane.idle()), None)
            if lane is not None:
                self._gathering = lane
                lane.task = asyncio.create_task(self._flush(lane))
        return done

    def use_lanes(self, lanes: int) -> None:
        """Keep up to `lanes` commits in flight at once (1 to MAX_LANES)."""
        self._open = max(1, min(MAX_LANES, lanes))

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """A slot sending for this page: while it is, a gathering commit expects a step of it."""
        self._senders += 1
        try:
            yield
        finally:
            self._senders -= 1
            if len(self._queue) >= self._senders:
                self._wake()

    def _wake(self) -> None:
        for full in self._waiting:
            _resolve(full)

    async def _gather(self) -> None:
        """Wait until every sending slot has a step queued or a queued step is due ("Gathering")."""
        loop = asyncio.get_running_loop()
        if not self._queue or len(self._queue) >= self._senders:
            return
        due = min(s.due for s in self._queue)
        if due <= loop.time():
            return
        full: asyncio.Future[None] = loop.create_future()
        self._waiting.add(full)
        timer = loop.call_at(due, _resolve, full)
        try:
            await full
        finally:
            timer.cancel()
            self._waiting.discard(full)

    async def finals(self, rows: list[FinalRow]) -> None:
        """Rows decided without a provider call (unrenderable messages), written once."""
        if rows:
            await self._commit("recording decided messages", rows=rows)

    async def close(self) -> None:
        await asyncio.gather(*(lane.task for lane in self._lanes if lane.task), return_exceptions=True)
        # The connections are discarded, never pooled: their sessions plan the step generically
        # for this page only (db.ledger.sends.prepare_writer), which no other borrower must inherit.
        for lane in self._lanes:
            await self._drop_connection(lane)

    async def _flush(self, lane: _Lane) -> None:
        while self._queue:
            self._gathering = lane
            try:
                await asyncio.sleep(0)  # let every slot that is ready this turn join the commit
                await self._gather()
            finally:  # (cancelled here, the steps stay queued for the next lane)
                self._gathering = None
            batch, self._queue = self._queue, []
            if not batch:
                continue  # another lane took what was queued meanwhile
            try:
                won = await self._commit("recording a step", lane=lane, steps=batch)
            except Exception as err:  # every waiting slot fails with it: the page fails
                for s in batch:
                    if not s.done.done():
                        s.done.set_exception(err)
                continue
            for s in batch:
                if not s.done.done():
                    s.done.set_result(s.claim is not None and s.claim.delivery_id in won)

    async def _commit(
        self,
        what: str,
        *,
        lane: _Lane | None = None,
        steps: list[_Step] | None = None,
        rows: list[FinalRow] | None = None,
    ) -> set[str]:
        at = datetime.now(UTC)  # one time per step, the same when it is replayed
        # Ids for the interaction rows the step writes, made once so that a replayed step reuses them.
        interaction_ids = [
            new_id("interaction") if a.logs_interaction else None for s in steps or () for a in s.answers
        ]
        # The common step is one statement, so it runs alone on the writer's autocommit connection:
        # one round trip, no BEGIN and COMMIT. Decided rows and steps with a hard bounce (the
        # customer is marked in the same transaction) take a pooled connection and a transaction.
        bounced = any(a.outcome == Outcome.BOUNCED for s in steps or () for a in s.answers)
        alone = None if bounced else lane  # the lane to commit on alone, if any
        for attempt in range(RECORD_ATTEMPTS):
            try:
                if alone is not None:
                    return await self._write(await self._connection(alone), steps or [], interaction_ids, at)
                async with self._engine.begin() as conn:
                    if rows is not None:
                        await insert_finals(
                            conn, campaign_id=self._campaign, tenant_id=self._tenant, rows=rows
                        )
                        return set()
                    await prepare_writer(conn, transaction=True)  # a pooled connection: this one only
                    return await self._write(conn, steps or [], interaction_ids, at)
            except (DBAPIError, psycopg.OperationalError) as err:
                # The hot statement runs on the driver itself, so its errors come unwrapped: any
                # OperationalError (connection lost, server restarting) is retried like a
                # connection SQLAlchemy saw invalidated, since every step is idempotent.
                lost = isinstance(err, psycopg.OperationalError) or bool(err.connection_invalidated)
                if alone is not None:
                    await self._drop_connection(alone)
                if not lost or attempt == RECORD_ATTEMPTS - 1:
                    raise
                log.warning("%s failed on a lost connection, retrying: %s", what, err)
                await asyncio.sleep(0.2 * 2**attempt)
        raise RuntimeError("unreachable")  # the loop returns or raises

    async def _write(
        self, conn: AsyncConnection, steps: list[_Step], interaction_ids: list[str | None], at: datetime
    ) -> set[str]:
        answers: list[AnswerRow] = []
        released: list[str] = []
        bounced: list[str] = []
        for a, iid in zip((a for s in steps for a in s.answers), interaction_ids, strict=True):
            if a.outcome is None:
                released.append(a.item.delivery_id)
                continue
            answers.append(a.row(iid, at))
            if a.outcome == Outcome.BOUNCED:
                bounced.append(a.item.message.customer_id)
        won = await write_step(
            conn,
            campaign_id=self._campaign,
            tenant_id=self._tenant,
            answers=answers,
            released=released,
            claims=[s.claim.claim() for s in steps if s.claim is not None],
            at=at,
            existing_rows=self._existing,
        )
        if bounced:
            await mark_email_bounced(conn, self._tenant, bounced, at)
        return won

    async def _connection(self, lane: _Lane) -> AsyncConnection:
        if lane.conn is None:
            # The lane holds it from checkout on, so a cut while its session is set up (the first
            # statement to find the socket dead) discards it like a cut mid-step: never left for
            # the garbage collector with its pool slot (tests/test_ledger_connections.py).
            lane.conn = await self._engine.connect()
            await lane.conn.execution_options(isolation_level="AUTOCOMMIT")  # on this connection
            await prepare_writer(lane.conn)
        return lane.conn

    async def _drop_connection(self, lane: _Lane) -> None:
        """Discard the lane's connection: never back to the pool (its socket may be dead, its
        session is the page's), but its pool slot is given back (a new connection later)."""
        conn, lane.conn = lane.conn, None
        if conn is None:
            return
        try:
            await conn.invalidate()
        except Exception:  # a broken connection may fail to close its socket; discarded anyway
            log.debug("invalidating a broken ledger connection failed", exc_info=True)
        try:
            await conn.close()
        except Exception:
            log.debug("closing a broken ledger connection failed", exc_info=True)
