"""plan_pages: cut the next stretch of a run's snapshot into pages with known bounds.

With bounds known up front, several pages of one campaign can be in flight at once (each its own
activity, on whichever worker takes it) and the workflow knows exactly which pages are done, so a
pause, a crash or a continue-as-new never sends or counts a page twice. The snapshot of a run
never changes below a chunk the workflow has taken in, so the same (run, after, page size, upto)
always gives the same bounds; while the snapshot is still being taken (`snapshot_upto`), only whole
pages up to the last chunk taken in are planned (workflows/snapshot_steps.py).

How large a page is (README "Pages of a large run"): a page costs a fixed share of machine CPU
however many recipients it holds (its activity, its queries, its writer connection, its tail), about
0.05-0.07 ms per email at 2,000 recipients, so a large run is cut into larger pages. A run still
spreads over at least ROUNDS rounds of its page window, so a campaign of a few thousand keeps its
several pages (and workers). A page that a rate limit slows sends for at most
`page_time_budget` per attempt and is then sent on as a new activity (activities.send.page), so a
large page never outlasts its activity's timeout.
"""

from temporalio import activity

from activities.deps import ActivityDeps
from core.messages import PlanPagesInput, PlanPagesResult
from core.settings import Settings
from db.ledger.runs import recipient_ids_after

# A large run's pages are sized so it still takes this many rounds of its window.
ROUNDS = 4


def page_size(run_size: int | None, settings: Settings) -> int:
    """Recipients per page for a run of `run_size` (None: unknown, `batch_size`)."""
    base = settings.batch_size
    if not run_size:
        return base
    spread = run_size // (settings.pages_in_flight * ROUNDS)
    return max(base, min(settings.large_batch_size, spread))


class PlanningActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="plan_pages")
    async def plan_pages(self, inp: PlanPagesInput) -> PlanPagesResult:
        size = page_size(inp.run_size, self._deps.settings)
        async with self._deps.engine.connect() as conn:
            ids = await recipient_ids_after(
                conn, inp.run_id, inp.after, size * inp.pages, upto=inp.snapshot_upto
            )
        bounds = ids[size - 1 :: size]
        snapshotting = inp.snapshot_upto is not None
        if len(ids) % size and not snapshotting:
            bounds.append(ids[-1])
        return PlanPagesResult(
            bounds=bounds,
            page_size=size,
            exhausted=len(ids) < size * inp.pages and not snapshotting,
            window=self._deps.settings.pages_in_flight,
        )
