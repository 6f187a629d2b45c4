"""The campaign workflow's state in groups (core/campaign_state.py) still reads the flat payloads
written before the grouping: recorded histories and running workflows carry them in workflow
inputs (continue-as-new) and in the read-model sync, and a key lost on the way would silently
reset a running campaign's field to its default.
"""

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from core.campaign_state import FLAT_KEYS, GROUPS, group_flat_keys
from core.messages import CampaignProgress, CampaignState, CampaignWorkflowInput

HISTORIES = Path(__file__).with_name("histories")

# The flat CampaignState as it was before the grouping, with the keys added since (`page_limit`):
# every field and its default (JSON).
OLD_FLAT_DEFAULTS: dict[str, Any] = {
    "status": "DRAFT",
    "scheduled_at": None,
    "started_at": None,
    "paused_at": None,
    "resumed_at": None,
    "cancelled_at": None,
    "completed_at": None,
    "target_count": None,
    "run_number": 0,
    "snapshot_cursor": None,
    "snapshot_complete": False,
    "send_cursor": None,
    "epoch": 1,
    "processed": 0,
    "counts": {"sent": 0, "skipped": 0, "failed": 0, "bounced": 0, "unknown": 0},
    "sent_recipients": 0,
    "last_error": None,
    "version": 1,
    "discarded": False,
    "schedule": None,
    "next_run_at": None,
    "last_run_at": None,
    "last_slot": None,
    "run_count": 0,
    "run_active": False,
    "target_base": 0,
    "pages": 0,
    "page_size": 0,
    "pages_ahead": [],
    "pages_done": [],
    "plan_exhausted": False,
    "window": 1,
    "page_limit": 0,
    "held": 0,
    "held_until": None,
    "sweep": 1,
    "recent": [],
    "ab_pending": False,
    "ab_winner": None,
    "expected_finish_at": None,
    "approved_by": None,
    "approved_at": None,
}

# A flat payload with every field away from its default, so a key that lands nowhere shows.
OLD_FLAT_FILLED: dict[str, Any] = {
    "status": "PAUSED",
    "scheduled_at": "2026-03-01T09:00:00Z",
    "started_at": "2026-03-01T09:00:01Z",
    "paused_at": "2026-03-01T09:05:00Z",
    "resumed_at": "2026-03-01T09:04:00Z",
    "cancelled_at": "2026-03-01T09:06:00Z",
    "completed_at": "2026-03-01T09:07:00Z",
    "target_count": 1200,
    "run_number": 3,
    "snapshot_cursor": "cust-0900",
    "snapshot_complete": True,
    "send_cursor": "cust-0400",
    "epoch": 4,
    "processed": 400,
    "counts": {"sent": 390, "skipped": 5, "failed": 2, "bounced": 2, "unknown": 1},
    "sent_recipients": 388,
    "last_error": "auto-paused: too many refusals",
    "version": 57,
    "discarded": True,
    "schedule": {"frequency": "weekly", "time": "09:00", "timezone": "Europe/Paris", "dayOfWeek": 1},
    "next_run_at": "2026-03-08T08:00:00Z",
    "last_run_at": "2026-03-01T08:00:02Z",
    "last_slot": "2026-03-01T08:00:00Z",
    "run_count": 2,
    "run_active": True,
    "target_base": 800,
    "pages": 11,
    "page_size": 100,
    "pages_ahead": ["cust-0500", "cust-0600"],
    "pages_done": ["cust-0600"],
    "plan_exhausted": True,
    "window": 4,
    "page_limit": 5000,
    "held": 17,
    "held_until": "2026-03-01T20:00:00Z",
    "sweep": 3,
    "recent": [[100, 3], [100, 40]],
    "ab_pending": True,
    "ab_winner": "B",
    "expected_finish_at": "2026-03-01T10:00:00Z",
    "approved_by": "user-7",
    "approved_at": "2026-02-28T12:00:00Z",
}


def flat_value(state: CampaignState, key: str) -> Any:
    """An old flat key's value read from the grouped state, as JSON (by alias, as the data
    converter writes it: the schedule is camelCase)."""
    return getattr(state, FLAT_KEYS[key]).model_dump(mode="json", by_alias=True)[key]


def recorded_state_payloads() -> list[tuple[str, Payload]]:
    """Every workflow input in the recorded histories that carries a state (continue-as-new
    inputs, and the first events of the runs they started)."""
    found: list[tuple[str, Payload]] = []
    for path in sorted(HISTORIES.glob("*.json")):
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        for event in history.events:
            if event.HasField("workflow_execution_started_event_attributes"):
                payloads = event.workflow_execution_started_event_attributes.input.payloads
            elif event.HasField("workflow_execution_continued_as_new_event_attributes"):
                payloads = event.workflow_execution_continued_as_new_event_attributes.input.payloads
            else:
                continue
            for payload in payloads:
                body = json.loads(payload.data)
                if isinstance(body, dict) and body.get("state"):
                    found.append((path.name, payload))
    return found


def decode_input(payload: Payload) -> CampaignWorkflowInput:
    """The input as the worker decodes it (the service's pydantic data converter)."""
    value = pydantic_data_converter.payload_converter.from_payloads([payload], [CampaignWorkflowInput])[0]
    assert isinstance(value, CampaignWorkflowInput)
    return value


def test_every_old_flat_key_lands_in_exactly_one_group() -> None:
    assert set(FLAT_KEYS) == set(OLD_FLAT_DEFAULTS)
    assert sum(len(model.model_fields) for model in GROUPS.values()) == len(FLAT_KEYS)
    assert set(CampaignState.model_fields) == set(GROUPS)
    assert not set(GROUPS) & set(FLAT_KEYS), "a group named like a flat key would be misread"


def test_defaults_are_those_of_the_flat_state() -> None:
    fresh = CampaignState()
    assert {key: flat_value(fresh, key) for key in FLAT_KEYS} == OLD_FLAT_DEFAULTS
    assert CampaignState.model_validate({}) == fresh


def test_a_filled_flat_payload_keeps_every_value() -> None:
    assert set(OLD_FLAT_FILLED) == set(OLD_FLAT_DEFAULTS)
    state = CampaignState.model_validate(OLD_FLAT_FILLED)
    for key, value in OLD_FLAT_FILLED.items():
        got = flat_value(state, key)
        assert got != OLD_FLAT_DEFAULTS[key], f"{key}: the test value must differ from the default"
        if key == "schedule":
            assert {k: got[k] for k in value} == value
        else:
            assert got == value, key


@pytest.mark.parametrize(
    ("history", "payload"), recorded_state_payloads(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_recorded_flat_state_reads_into_groups(history: str, payload: Payload) -> None:
    raw = json.loads(payload.data)["state"]
    assert set(raw) <= set(FLAT_KEYS), f"{history}: keys no group takes: {set(raw) - set(FLAT_KEYS)}"
    assert not set(raw) & set(GROUPS), f"{history} is expected to hold the flat shape"
    state = decode_input(payload).state
    assert state is not None
    for key, value in raw.items():
        assert flat_value(state, key) == value, f"{history}: {key}"


def test_the_continue_as_new_input_of_a_recurring_campaign() -> None:
    """The input a RECURRING campaign's last run started with, field by field where it matters."""
    names = [name for name, _ in recorded_state_payloads()]
    assert "continued_as_new_last_run.json" in names
    payload = next(p for name, p in recorded_state_payloads() if name == "continued_as_new_last_run.json")
    raw = json.loads(payload.data)["state"]
    state = decode_input(payload).state
    assert state is not None
    assert state.lifecycle.status.value == raw["status"]
    assert state.lifecycle.epoch == raw["epoch"]
    assert state.lifecycle.version == raw["version"]
    assert state.run.run_number == raw["run_number"]
    assert state.run.send_cursor == raw["send_cursor"]
    assert state.tally.processed == raw["processed"]
    assert state.tally.counts.model_dump() == raw["counts"]
    assert state.tally.target_count == raw["target_count"]


def test_the_state_is_written_flat_and_round_trips() -> None:
    """Written in the flat shape of the release before, key for key, so that a worker of that
    release reads it whole during a rolling deploy (README "Workflow changes")."""
    state = CampaignState.model_validate(OLD_FLAT_FILLED)
    dumped = json.loads(state.model_dump_json())
    assert set(dumped) == set(FLAT_KEYS), "the payload's keys are the flat ones, no more, no fewer"
    assert CampaignState.model_validate_json(state.model_dump_json()) == state
    assert CampaignState.model_validate(dumped) == state
    carried = CampaignWorkflowInput(campaign_id="c", tenant_id="t", state=state)
    payload = pydantic_data_converter.payload_converter.to_payloads([carried])[0]
    assert decode_input(payload) == carried


def test_a_grouped_payload_is_left_alone_and_wins_over_a_stray_flat_key() -> None:
    grouped = {"lifecycle": {"status": "ACTIVE", "epoch": 3}, "run": {"send_cursor": "c-9"}}
    assert CampaignState.model_validate(grouped).lifecycle.epoch == 3
    mixed = group_flat_keys({**grouped, "epoch": 9, "processed": 5})
    assert mixed["lifecycle"] == {"status": "ACTIVE", "epoch": 3}
    assert mixed["tally"] == {"processed": 5}
    assert mixed["run"] == {"send_cursor": "c-9"}


def test_the_progress_query_keeps_its_flat_shape() -> None:
    """The `progress` query's answer is read by the API and operators: grouping the state must
    not change it."""
    assert list(CampaignProgress.model_fields) == [
        "campaign_id",
        "status",
        "target_count",
        "processed",
        "sent_recipients",
        "counts",
        "snapshot_complete",
        "batch_running",
        "scheduled_at",
        "last_error",
        "held",
        "held_until",
        "expected_finish_at",
    ]
