"""The fault suite (issue 8): sizes, the `faults` marker on every case, and the figures table.

CI runs sized-down cases; `CAMPAIGNS_FAULTS_FULL=1` selects the full sizes (README "Fault suite").
"""

import os

import pytest

from tests.faults.reconcile import COLLECTED

FULL = os.environ.get("CAMPAIGNS_FAULTS_FULL") == "1"


def size(ci: int, full: int) -> int:
    """Recipients of a case: `full` with CAMPAIGNS_FAULTS_FULL=1, else the CI size."""
    return full if FULL else ci


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not COLLECTED:
        return
    tr = terminalreporter
    tr.section(f"fault suite ({'full' if FULL else 'CI'} sizes)")
    tr.write_line(
        "| case | faults injected | recipients | messages | sent | skipped | failed | bounced"
        " | duplicates | skips without reason | UNKNOWN (bound; arrived) |"
    )
    for f in COLLECTED:
        tr.write_line(
            f"| {f.case} | {f.faults} | {f.recipients:,} | {f.messages:,} | {f.sent:,} | {f.skipped:,}"
            f" | {f.failed:,} | {f.bounced:,} | {f.duplicates} | {f.skips_without_reason}"
            f" | {f.unknown} (<= {f.unknown_bound}; {f.unknown_arrived} arrived) |"
        )
