"""The background roll-up of the API: counts what tracking appended, a few times a second.

Tracking requests only insert interactions (api.tracking_writer); this task folds them into the
counters and first-of-a-kind rows (db.rollups.roll_up_pending), each pass one transaction that
flips `rolled_up` on the rows it counts, so every interaction is counted exactly once even when
several API processes run it (only one holds the advisory lock at a time; the others skip that
tick). /stats does not wait for it: it adds the rows not counted yet and reports how many there
were (`rollupPending`), so the roll-up's lag costs a read a little work, never a wrong figure.

Clicks wait `settle_seconds` (core.engagement.LINK_BURST) before the background loop counts them:
a click that turns out to be one of a scanner's burst on a message's links is reclassified as a
machine's only while it is not counted (db.interactions.mark_link_bursts). An explicit `run_once()`
(tests, the final pass at stop) counts everything; /stats counts waiting clicks from their rows.

The lag is one `interval` plus a pass: a pass takes up to `batch` rows and runs again at once
while it finds a full batch, so a burst is caught up as fast as the database can count it.
"""

import asyncio
import logging
import time

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import loggable_error
from core.engagement import LINK_BURST
from db.rollups import roll_up_pending

log = logging.getLogger("campaigns.rollup")

DEFAULT_INTERVAL_SECONDS = 0.5


class BackgroundRollup:
    """Start with `start()` inside the event loop; `stop()` ends it after a final pass."""

    def __init__(
        self,
        engine: AsyncEngine,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        batch: int = 5000,
        settle_seconds: float = LINK_BURST.total_seconds(),
    ) -> None:
        self._engine = engine
        self._interval = interval
        self._batch = batch
        self._settle = settle_seconds
        self._task: asyncio.Task[None] | None = None
        self.last_pass_at: float | None = None  # time.monotonic() of the last pass that ran

    async def run_once(self, settle: bool = False) -> int:
        """Count every interaction not counted yet (batch by batch; with `settle`, clicks younger
        than `settle_seconds` wait); rows counted by this call. Returns at once (0) when another
        process is rolling up."""
        total = 0
        settle_seconds = self._settle if settle else 0.0
        while True:
            async with self._engine.begin() as conn:
                counted = await roll_up_pending(conn, self._batch, settle_seconds)
            if counted is None:
                return total
            total += counted
            self.last_pass_at = time.monotonic()
            if counted < self._batch:
                return total

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rollup")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        try:
            await self.run_once()  # what the last requests appended
        except SQLAlchemyError as err:
            log.warning("final roll-up failed (the next process counts it): %s", loggable_error(err))

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once(settle=True)
            except SQLAlchemyError as err:
                # The rows stay not-rolled-up and are counted by the next pass; reads stay exact.
                log.warning("roll-up pass failed, retrying: %s", loggable_error(err))
            await asyncio.sleep(self._interval)
