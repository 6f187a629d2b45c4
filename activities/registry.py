"""The full list of activity callables a campaign worker registers."""

from collections.abc import Callable
from typing import Any

from activities.deps import ActivityDeps
from activities.experiments import ExperimentActivities
from activities.journey import JourneyActivities
from activities.lifecycle import LifecycleActivities
from activities.planning import PlanningActivities
from activities.resend import ResendActivities
from activities.sending import SendingActivities
from activities.snapshot import SnapshotActivities
from activities.triggered import TriggeredActivities


def all_activities(deps: ActivityDeps) -> list[Callable[..., Any]]:
    life = LifecycleActivities(deps)
    snap = SnapshotActivities(deps)
    send = SendingActivities(deps)
    resend = ResendActivities(deps)
    triggered = TriggeredActivities(deps)
    journey = JourneyActivities(deps)
    planning = PlanningActivities(deps)
    experiments = ExperimentActivities(deps)
    return [
        life.check_campaign,
        life.sync_campaign,
        life.apply_edit,
        life.halt_run,
        life.finish_run,
        snap.snapshot_audience,
        send.send_batch,
        send.send_held,
        resend.resend_unknown,
        life.next_run_time,
        life.close_ledger,
        triggered.send_triggered,
        triggered.close_triggers,
        journey.prepare_journey_send,
        journey.run_summary,
        journey.customer_engagement,
        journey.customer_event_seen,
        planning.plan_pages,
        experiments.decide_winner,
    ]
