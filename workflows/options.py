"""Activity timeouts and retries of the campaign workflows, defined once per kind of activity.

A page heartbeats every second, so a dead worker is noticed within HEARTBEAT; everything else is a
short statement or two (SHORT). A halted page gets HALT_GRACE to return before it is cancelled.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.constants import ERR_CAMPAIGN_INVALID

SHORT = timedelta(seconds=30)
BATCH_TIMEOUT = timedelta(minutes=15)
HEARTBEAT = timedelta(seconds=10)
HALT_GRACE = timedelta(seconds=5)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[ERR_CAMPAIGN_INVALID],
)
