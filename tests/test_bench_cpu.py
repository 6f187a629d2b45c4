"""bench.cpu: a process gone between two readings counts once, through the parent that reaped it."""

from bench.cpu import PARTS, Reading, spent


def _reading(postgres: dict[int, float], parents: dict[int, int]) -> Reading:
    seconds: dict[str, dict[int, float]] = {part: {} for part in PARTS}
    seconds["Postgres"] = postgres
    return Reading(seconds, parents)


def test_a_connection_closed_mid_run_adds_only_what_it_spent_meanwhile() -> None:
    # postmaster 1; backend 2 had spent 0.4 s (seeding) before the run, 0.1 s in it, then exited:
    # the postmaster's children's time grew by its whole life (0.5 s) when it was reaped.
    before = _reading({1: 10.0, 2: 0.4, 3: 1.0}, {2: 1, 3: 1})
    after = _reading({1: 10.5, 3: 1.3}, {3: 1})
    assert round(spent(before, after)["Postgres"], 6) == 0.1 + 0.3


def test_a_process_born_and_gone_in_the_run_counts_through_its_parent() -> None:
    before = _reading({1: 10.0}, {})
    after = _reading({1: 10.25, 4: 0.5}, {4: 1})  # one reaped (0.25 s), one born and still here
    assert round(spent(before, after)["Postgres"], 6) == 0.75


def test_a_whole_tree_gone_counts_nothing_rather_than_less_than_nothing() -> None:
    before = _reading({1: 10.0, 2: 0.4}, {2: 1})
    after = _reading({5: 0.2}, {})
    assert round(spent(before, after)["Postgres"], 6) == 0.2
