"""The lifecycle table: which statuses each action may leave from, written once.

The Update validators, the Update handlers (which check again after any await) and the operator
signals all read this table, so an action can never be legal through one door and illegal through
another. The rules (docs: README "Lifecycle and operators"):

| action   | allowed from                  | leads to   |
|----------|-------------------------------|------------|
| schedule | DRAFT, SCHEDULED (reschedule) | SCHEDULED  |
| execute  | DRAFT, SCHEDULED              | ACTIVE     |
| pause    | ACTIVE                        | PAUSED     |
| resume   | PAUSED                        | ACTIVE     |
| cancel   | SCHEDULED, ACTIVE, PAUSED     | CANCELLED  |
| edit     | DRAFT                         | (same)     |
| discard  | DRAFT                         | (deleted)  |
| approve  | DRAFT, SCHEDULED              | (same)     |
| winner   | ACTIVE, PAUSED (A/B test on)  | (same)     |

A discarded (deleted) DRAFT allows nothing. An Update that is not allowed fails with a
non-retryable `IllegalTransition` application error (the API's 409); a signal that is not allowed is
logged and ignored (operators and parent workflows get no answer to read).
"""

from dataclasses import dataclass
from typing import Literal

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from core.constants import ERR_ILLEGAL_TRANSITION
    from core.enums import CampaignStatus

S = CampaignStatus
Action = Literal["schedule", "execute", "pause", "resume", "cancel", "edit", "discard", "approve", "winner"]


@dataclass(frozen=True)
class Transition:
    verb: str  # as it reads in "cannot <verb> a campaign that is <status>"
    allowed: frozenset[CampaignStatus]


TRANSITIONS: dict[Action, Transition] = {
    "schedule": Transition("schedule", frozenset({S.DRAFT, S.SCHEDULED})),
    "execute": Transition("execute", frozenset({S.DRAFT, S.SCHEDULED})),
    "pause": Transition("pause", frozenset({S.ACTIVE})),
    "resume": Transition("resume", frozenset({S.PAUSED})),
    "cancel": Transition("cancel", frozenset({S.SCHEDULED, S.ACTIVE, S.PAUSED})),
    "edit": Transition("change the audience or content of", frozenset({S.DRAFT})),
    "discard": Transition("delete", frozenset({S.DRAFT})),
    "approve": Transition("approve", frozenset({S.DRAFT, S.SCHEDULED})),
    "winner": Transition("pick the winner of", frozenset({S.ACTIVE, S.PAUSED})),
}


def allows(action: Action, status: CampaignStatus, discarded: bool) -> bool:
    return not discarded and status in TRANSITIONS[action].allowed


def require(action: Action, status: CampaignStatus, discarded: bool) -> None:
    """Raise the IllegalTransition error when `action` is not allowed from `status`."""
    if not allows(action, status, discarded):
        verb = TRANSITIONS[action].verb
        raise ApplicationError(
            f"cannot {verb} a campaign that is {status.value}",
            {"status": status.value, "action": verb},
            type=ERR_ILLEGAL_TRANSITION,
            non_retryable=True,
        )


def invalid(message: str, details: dict[str, object], *, kind: str) -> ApplicationError:
    """A non-retryable application error: the workflow's replacement for `assert`."""
    return ApplicationError(message, details, type=kind, non_retryable=True)
