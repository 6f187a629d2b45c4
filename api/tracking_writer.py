"""Group commit for opens and clicks: many concurrent requests, one INSERT and one commit.

Under a burst, each tracking request would otherwise pay its own round trip and commit. Here a
request hands its event to the writer and waits; the writer takes every event waiting, stores them
in one autocommitted statement (db.interactions.append_tracked) and only then wakes the requests.
So a request's answer (the pixel, the redirect) is sent after its event is durable: a crash loses
only events that were never acknowledged. While one batch is in the database the next one gathers,
so batches grow with the load and an idle server writes each event at once.

After a batch that holds clicks, the writer reclassifies the clicks that turn out to be a burst on
one message's links (db.interactions.mark_link_bursts, core.engagement rule 3) in a second
statement: the INSERT cannot see its own rows, and a scanner's clicks often share a batch.

If a batch fails, each of its events is tried alone, so one bad row cannot sink the others; an event
that still fails raises in its own request (which logs it and answers anyway, see api.routes.tracking).
"""

import asyncio
import logging
from dataclasses import dataclass, field

from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import loggable_error
from core.enums import InteractionType
from db.interactions import TrackedEvent, append_tracked, mark_link_bursts

log = logging.getLogger("campaigns.tracking")

IDLE_SECONDS = 5.0  # an idle writer's task ends; the next event starts a new one


@dataclass
class _Waiting:
    event: TrackedEvent
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class TrackingWriter:
    """One per process and event loop; started on first use, stopped by `close`."""

    def __init__(self, engine: AsyncEngine, max_batch: int = 500) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._max_batch = max_batch
        self._queue: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def append(self, event: TrackedEvent) -> None:
        """Return once `event` is stored (or was a replay, or names no message of its campaign)."""
        waiting = _Waiting(event)
        self._queue.append(waiting)
        self._wake.set()
        if self._task is None or self._task.done():
            # (a task that ended idle is done; its last batch was settled before it returned)
            self._task = asyncio.get_running_loop().create_task(self._run(), name="tracking-writer")
        await waiting.done

    async def close(self) -> None:
        """Write what is queued, then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._closing = True
        self._wake.set()
        await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        batch: list[_Waiting] = []
        try:
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), IDLE_SECONDS)
                except TimeoutError:
                    if not self._queue:
                        return  # idle: the next event starts the writer again
                self._wake.clear()
                while self._queue:
                    batch = self._queue[: self._max_batch]
                    del self._queue[: self._max_batch]
                    await self._write(batch)
                    batch = []
                if self._closing:
                    return
        finally:
            stopped = RuntimeError("the tracking writer stopped")
            _settle(batch + self._queue, stopped)
            self._queue.clear()

    async def _write(self, batch: list[_Waiting]) -> None:
        try:
            async with self._engine.connect() as conn:
                await append_tracked(conn, [w.event for w in batch])
        except (OperationalError, InterfaceError) as error:
            _settle(batch, error)  # the database is away: every event of the batch would fail alike
        except SQLAlchemyError as error:
            if len(batch) == 1:
                _settle(batch, error)
            else:
                for waiting in batch:
                    await self._write([waiting])
        else:
            await self._mark_bursts(batch)
            _settle(batch, None)

    async def _mark_bursts(self, batch: list[_Waiting]) -> None:
        """Rule 3 for the clicks just stored. Its failure must not fail the stored events (a retry
        of the batch would store them twice); the clicks then keep the class they were stored with."""
        clicked = [w.event.delivery_id for w in batch if w.event.type == InteractionType.CLICKED]
        if not clicked:
            return
        try:
            async with self._engine.connect() as conn:
                await mark_link_bursts(conn, clicked)
        except SQLAlchemyError as error:
            log.warning("could not check clicks for link bursts: %s", loggable_error(error))


def _settle(batch: list[_Waiting], error: BaseException | None) -> None:
    """Wake each waiting request: stored (None) or the error its request reports."""
    for waiting in batch:
        if waiting.done.done():
            continue
        if error is None:
            waiting.done.set_result(None)
        else:
            waiting.done.set_exception(error)
