"""The campaign workflow's state, grouped by what each part is about.

`CampaignState` is everything the workflow knows, carried whole across continue-as-new (README
"Lifecycle and operators"), so it travels in workflow inputs and in the read-model sync. It is
five small models rather than one flat one: the lifecycle, the tally of what was sent, where the
current run stands, the recurrence and the sending policies.

Payloads written before the grouping are flat (every field at the top level): recorded histories
and running workflows carry them, so `CampaignState` still reads that shape, moving each flat key
into its group. It always writes the grouped shape. Pure pydantic models (no I/O): the API, the
worker and the workflow sandbox share them.
"""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from core.enums import CampaignStatus
from core.recurrence import RecurringSchedule


class Counts(BaseModel):
    """Ledger outcomes of completed pages (messages, per channel summed)."""

    sent: int = 0
    skipped: int = 0
    failed: int = 0
    bounced: int = 0
    unknown: int = 0

    def plus(self, other: "Counts") -> "Counts":
        return Counts(
            sent=self.sent + other.sent,
            skipped=self.skipped + other.skipped,
            failed=self.failed + other.failed,
            bounced=self.bounced + other.bounced,
            unknown=self.unknown + other.unknown,
        )


class Lifecycle(BaseModel):
    """Where the campaign stands and when it got there (README "Lifecycle and operators")."""

    status: CampaignStatus = CampaignStatus.DRAFT
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    paused_at: datetime | None = None
    resumed_at: datetime | None = None
    cancelled_at: datetime | None = None
    completed_at: datetime | None = None
    # Bumped on every pause/cancel so a halt reaches only the batches started before it.
    epoch: int = 1
    # Bumped on every change: the read model keeps the newest, and waits wake on it.
    version: int = 1
    discarded: bool = False
    last_error: str | None = None
    # Who approved the campaign and when (README "Approvals"); cleared by an edit.
    approved_by: str | None = None
    approved_at: datetime | None = None


class Tally(BaseModel):
    """What the sends reached, over all runs (named apart from the `progress` query's answer)."""

    target_count: int | None = None
    # Recipients targeted by the runs before the current one (target_count sums all runs).
    target_base: int = 0
    processed: int = 0
    counts: Counts = Field(default_factory=Counts)
    sent_recipients: int = 0
    # Pages sent (all runs) and the largest page seen: "page 12 of 40" in the Temporal UI.
    pages: int = 0
    page_size: int = 0
    # At the rate limits' current pace, when the run's remaining recipients will have been sent.
    expected_finish_at: datetime | None = None


class RunCursor(BaseModel):
    """Where the current run stands: its snapshot, its send cursor and its page window."""

    run_number: int = 0
    snapshot_cursor: str | None = None
    snapshot_complete: bool = False
    send_cursor: str | None = None
    run_active: bool = False
    # The page window (workflows/page_window.py): planned page upper bounds above `send_cursor`
    # (in order), those of them already sent, whether the plan reached the run's end, and how
    # many pages may be in flight at once (the worker's `pages_in_flight`).
    pages_ahead: list[str] = Field(default_factory=list)
    pages_done: list[str] = Field(default_factory=list)
    plan_exhausted: bool = False
    window: int = 1
    # The largest page planned so far (recipients): each page is sent with this as its limit, so
    # a page always loads every recipient in its bounds, whatever size a worker's settings say.
    page_limit: int = 0


class Recurrence(BaseModel):
    """A RECURRING campaign (README "Campaign types"): the schedule pinned at execute/schedule
    time, and where the recurrence stands."""

    schedule: RecurringSchedule | None = None
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    # The scheduled instant of the latest run: the next run is the first slot after it (or after
    # now, so that slots missed while paused are skipped, not sent late).
    last_slot: datetime | None = None
    run_count: int = 0


class Policies(BaseModel):
    """Where the sending policies stand (README "Sending policies" and "A/B tests")."""

    # Quiet hours: messages held back, when the earliest is due, and the number of the next
    # sweep that sends the due ones.
    held: int = 0
    held_until: datetime | None = None
    sweep: int = 1
    # Auto-pause: [messages, failures] of the latest pages, as many as cover its window.
    recent: list[list[int]] = Field(default_factory=list)
    # An A/B test waits for its decision, and the winner once known.
    ab_pending: bool = False
    ab_winner: str | None = None


# The groups by their field name in CampaignState.
GROUPS: dict[str, type[BaseModel]] = {
    "lifecycle": Lifecycle,
    "tally": Tally,
    "run": RunCursor,
    "recurrence": Recurrence,
    "policies": Policies,
}
# Each key of the old flat payload, and the group it now lives in (same name inside the group).
FLAT_KEYS: dict[str, str] = {key: group for group, model in GROUPS.items() for key in model.model_fields}


def group_flat_keys(data: dict[str, Any]) -> dict[str, Any]:
    """A flat payload (or a mix) in the grouped shape: each flat key moves into its group, where
    a value the payload already has nested wins. Other keys are left as they are."""
    grouped: dict[str, Any] = {key: value for key, value in data.items() if key not in FLAT_KEYS}
    for key, value in data.items():
        group = FLAT_KEYS.get(key)
        if group is None:
            continue
        nested = grouped.get(group)
        if isinstance(nested, BaseModel):
            nested = nested.model_dump()
        part: dict[str, Any] = dict(nested) if isinstance(nested, dict) else {}
        part.setdefault(key, value)
        grouped[group] = part
    return grouped


class CampaignState(BaseModel):
    """Everything the workflow knows; carried whole across continue-as-new.

    The workflow changes the groups in place and never replaces one, so a step may hold a group
    in a local name across an await and still see the handlers' changes."""

    lifecycle: Lifecycle = Field(default_factory=Lifecycle)
    tally: Tally = Field(default_factory=Tally)
    run: RunCursor = Field(default_factory=RunCursor)
    recurrence: Recurrence = Field(default_factory=Recurrence)
    policies: Policies = Field(default_factory=Policies)

    @model_validator(mode="before")
    @classmethod
    def _read_flat_payload(cls, data: Any) -> Any:
        """Histories and running workflows hold the flat shape written before the grouping."""
        if isinstance(data, dict) and not FLAT_KEYS.keys().isdisjoint(data.keys()):
            return group_flat_keys(data)
        return data

    @model_serializer(mode="wrap")
    def _write_flat_payload(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Written flat, as before the grouping: a worker of the release before reads every key it
        knows (an unknown nested group would read as an all-default DRAFT state), so old and new
        workers can share a task queue during a rolling deploy (README "Workflow changes")."""
        data: dict[str, Any] = handler(self)
        flat: dict[str, Any] = {}
        for group in GROUPS:
            part = data.pop(group, None)
            if isinstance(part, dict):
                flat.update(part)
        flat.update(data)
        return flat
