"""Reading a campaign workflow's history in tests: what its activities were given and returned
(the workflow's own record of what it asked for, whatever the worker logged)."""

from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from tests.conftest import Stack


def _decode(payloads: Any, kind: type[Any]) -> list[Any]:
    return pydantic_data_converter.payload_converter.from_payloads(payloads, [kind])


async def workflow_events(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    """The events of the workflow's current run."""
    return [e async for e in handle.fetch_history_events()]


async def campaign_history(stack: Stack, campaign_id: str) -> list[HistoryEvent]:
    """The events of the campaign workflow's current run."""
    return await workflow_events(stack.client.get_workflow_handle(f"campaign-{campaign_id}"))


def activity_inputs(events: list[HistoryEvent], activity: str, kind: type[Any]) -> list[Any]:
    """The input of every `activity` the workflow scheduled, in order."""
    found = []
    for e in events:
        if not e.HasField("activity_task_scheduled_event_attributes"):
            continue
        attrs = e.activity_task_scheduled_event_attributes
        if attrs.activity_type.name == activity:
            found.extend(_decode(attrs.input.payloads, kind))
    return found


def scheduled_ids(events: list[HistoryEvent], activity: str) -> list[int]:
    """The event ids of every `activity` the workflow scheduled, in order."""
    return [
        e.event_id
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity
    ]


def _completions(events: list[HistoryEvent], activity: str) -> list[HistoryEvent]:
    scheduled = set(scheduled_ids(events, activity))
    return [
        e
        for e in events
        if e.HasField("activity_task_completed_event_attributes")
        and e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
    ]


def completed_ids(events: list[HistoryEvent], activity: str) -> list[int]:
    """The event ids of every completion of `activity`, in order."""
    return [e.event_id for e in _completions(events, activity)]


def activity_results(events: list[HistoryEvent], activity: str, kind: type[Any]) -> list[Any]:
    """The result of every `activity` that completed, in the order they completed."""
    found = []
    for e in _completions(events, activity):
        found.extend(_decode(e.activity_task_completed_event_attributes.result.payloads, kind))
    return found
