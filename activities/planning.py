"""plan_pages: cut the next stretch of a run's snapshot into pages with known bounds.

With bounds known up front, several pages of one campaign can be in flight at once (each its own
activity, on whichever worker takes it) and the workflow knows exactly which pages are done, so a
pause, a crash or a continue-as-new never sends or counts a page twice. The snapshot of a run
never changes, so the same (run, after, page size) always gives the same bounds.
"""

from temporalio import activity

from activities.deps import ActivityDeps
from core.messages import PlanPagesInput, PlanPagesResult
from db.ledger.runs import recipient_ids_after


class PlanningActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="plan_pages")
    async def plan_pages(self, inp: PlanPagesInput) -> PlanPagesResult:
        size = self._deps.settings.batch_size
        async with self._deps.engine.connect() as conn:
            ids = await recipient_ids_after(conn, inp.run_id, inp.after, size * inp.pages)
        bounds = ids[size - 1 :: size]
        if len(ids) % size:
            bounds.append(ids[-1])
        return PlanPagesResult(
            bounds=bounds,
            page_size=size,
            exhausted=len(ids) < size * inp.pages,
            window=self._deps.settings.pages_in_flight,
        )
