"""The rule the latency-isolation tests judge by (tests/attack.py `judged`): a p99 over the bound is
measured again, and only a run of measurements all over it fails; a failed probe fails at once."""

from collections.abc import Awaitable, Callable

import pytest

from tests.attack import ATTEMPTS, HealthFigures, judged

IDLE = [0.002] * 100  # idle p99 2 ms: the bound is 3 x the 5 ms floor = 15 ms


def figures(attack_ms: float, failed: int = 0) -> HealthFigures:
    return HealthFigures(IDLE, [attack_ms / 1000] * 100, rounds=5, attack_seconds=3.0, failed_probes=failed)


def measurements(
    *results: HealthFigures,
) -> tuple[list[HealthFigures], Callable[[], Awaitable[HealthFigures]]]:
    taken: list[HealthFigures] = []
    pending = list(results)

    async def measure() -> HealthFigures:
        taken.append(pending.pop(0))
        return taken[-1]

    return taken, measure


async def test_within_the_bound_at_once_is_measured_once() -> None:
    taken, measure = measurements(figures(4.0), figures(4.0))
    assert (await judged(measure)).attack_p99 == pytest.approx(0.004)
    assert len(taken) == 1


async def test_one_slow_measurement_is_measured_again() -> None:
    taken, measure = measurements(figures(16.1), figures(9.0))
    assert (await judged(measure)).attack_p99 == pytest.approx(0.009)
    assert len(taken) == 2


async def test_an_attack_over_the_bound_every_time_fails() -> None:
    taken, measure = measurements(*(figures(40.0) for _ in range(ATTEMPTS + 1)))
    with pytest.raises(AssertionError, match=f"in all {ATTEMPTS} measurements"):
        await judged(measure)
    assert len(taken) == ATTEMPTS


async def test_a_failed_probe_fails_without_measuring_again() -> None:
    taken, measure = measurements(figures(4.0, failed=1), figures(4.0))
    with pytest.raises(AssertionError, match="probe"):
        await judged(measure)
    assert len(taken) == 1
