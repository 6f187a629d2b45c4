"""The garbage collector of a long-running service process (API and worker).

A full (oldest-generation) collection walks every object the process holds, and a process that has
imported FastAPI, pydantic, SQLAlchemy and the Temporal SDK holds hundreds of thousands: measured
with `bench.api_bench`, such a pass stalled the event loop for 50-70 ms, which was the whole p99 of
the read routes at 10 clients (80 ms against a p50 of 15 ms; 16-28 ms once frozen). So, once a
process has started:

- `gc.freeze()` moves everything allocated so far (modules, classes, settings, pools) out of the
  collector's sight: it is never garbage, and it is no longer walked;
- the youngest generation is collected after 20,000 allocations instead of 700, so the many small
  objects of one request (dicts, models, rows) mostly die by reference counting before a pass.

Only reference cycles need the collector, and a request makes few; memory stays bounded because the
thresholds still trigger collections, just less often.
"""

import gc

YOUNG_THRESHOLD = 20_000


def tune_for_service() -> None:
    """Call once the process has started (imports done, pools built), before it serves."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, max(middle, 50), max(old, 100))
