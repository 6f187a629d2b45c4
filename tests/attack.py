"""Measuring what an attack does to everybody else: `/health` latency of a real API process.

A hostile tenant's request must not raise other tenants' latency. The honest place to see it is a
real `uvicorn api.main:app` process (its own event loop, its own GIL) probed by a process of its own
(`tests.probe`), so neither the test's client work nor its event loop shows up as server latency.

`health_during` probes the server in alternating phases, idle and under attack (the attack repeated
round after round: one round = one malicious request, or one small sequence, awaited), and compares
the 99th percentile of `/health` latency of both kinds of phase. The acceptance rule of issue 13 is that the
attack's p99 stays within 3x the idle p99. The idle p99 is floored at `IDLE_FLOOR_S`: on a loopback
server it can be well under a millisecond, where one scheduler hiccup of the 2-core box would
otherwise decide the test; the floor is stated with the figures.

`unaffected` is how tests judge it: a p99 over the bound is measured again, and the test fails only
when `ATTEMPTS` measurements in a row are all over it. The tests share two cores with whatever
the other test worker runs, and a p99 is one slow probe in a hundred: on 2026-12-06 two of these
tests failed once each in CI by a hair (16.1 ms against a bound of 15.6, 21.2 against 20.0) and
passed alone. An attack that really slows the others (the wide CSV header took 17 s per request
before its bound) is over the bound in every measurement, so it still fails; a failed probe or too
few probes fail at once, never measured again.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.settings import as_environment
from tests.conftest import Stack

ROOT = Path(__file__).resolve().parent.parent
IDLE_FLOOR_S = 0.005
PROBE_INTERVAL_S = 0.01
ATTEMPTS = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _spawn(args: list[str], env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    """`python -m <args>` from the repository root (a plain function: starting is not awaited)."""
    return subprocess.Popen(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log
    )


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `grace` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: str) -> str:
    return Path(path).read_text()[-3000:]


@asynccontextmanager
async def api_process(stack: Stack, **overrides: str) -> AsyncIterator[str]:
    """`uvicorn api.main:app` serving the stack's settings (plus `overrides`); yields its base URL."""
    port = _free_port()
    env = {**os.environ, **as_environment(stack.settings), "CAMPAIGNS_LOG_LEVEL": "WARNING", **overrides}
    log = tempfile.NamedTemporaryFile(prefix="attack-api-", suffix=".log", delete=False)
    # As deployed: the HTTP protocol that refuses an oversized request head while reading it.
    serve = ["uvicorn", "api.main:app", "--http", "api.edge:HttpToolsWithHeadLimit"]
    proc = _spawn([*serve, "--host", "127.0.0.1", "--port", str(port)], env, log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the API did not start:\n{_tail(log.name)}")
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        yield base_url
    finally:
        _stop(proc, 20)
        log.close()
        os.unlink(log.name)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@dataclass(frozen=True)
class HealthFigures:
    """`/health` latency (seconds) while idle and while the attack repeated."""

    idle: list[float]
    attack: list[float]
    rounds: int
    attack_seconds: float
    failed_probes: int

    @property
    def idle_p99(self) -> float:
        return _p99(self.idle)

    @property
    def attack_p99(self) -> float:
        return _p99(self.attack)

    @property
    def bound(self) -> float:
        return 3 * max(self.idle_p99, IDLE_FLOOR_S)

    def __str__(self) -> str:
        return (
            f"/health p99 idle {self.idle_p99 * 1000:.1f} ms ({len(self.idle)} probes), during "
            f"{self.rounds} attack round(s) over {self.attack_seconds:.1f} s "
            f"{self.attack_p99 * 1000:.1f} ms ({len(self.attack)} probes, max "
            f"{max(self.attack) * 1000:.1f} ms); bound 3 x max(idle p99, "
            f"{IDLE_FLOOR_S * 1000:.0f} ms) = {self.bound * 1000:.1f} ms"
        )

    def assert_probed(self) -> None:
        """Every probe answered, and enough of them came during the attack to judge."""
        assert self.failed_probes == 0, f"{self.failed_probes} /health probe(s) failed; {self}"
        assert len(self.attack) >= 20, f"too few probes during the attack to judge; {self}"

    @property
    def within_bound(self) -> bool:
        return self.attack_p99 <= self.bound


async def judged(measure: Callable[[], Awaitable[HealthFigures]], attempts: int = ATTEMPTS) -> HealthFigures:
    """The first measurement within the bound; AssertionError when `attempts` in a row are over it
    (or at once when probes failed or were too few). See the module's docstring for why."""
    over: list[HealthFigures] = []
    for _ in range(attempts):
        figures = await measure()
        print(figures)
        figures.assert_probed()
        if figures.within_bound:
            return figures
        over.append(figures)
    raise AssertionError(
        f"the attack raised /health latency in all {attempts} measurements: "
        + "; ".join(str(f) for f in over)
    )


async def unaffected(base_url: str, attack: Callable[[], Awaitable[object]], **kwargs: Any) -> HealthFigures:
    """`health_during(base_url, attack, **kwargs)`, judged (`judged`): the figures that passed."""
    return await judged(lambda: health_during(base_url, attack, **kwargs))


def _read(path: str, windows: list[tuple[float, float]]) -> tuple[list[float], int]:
    latencies: list[float] = []
    failed = 0
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        sent, latency, status = float(parts[0]), float(parts[1]), parts[2]
        # A probe belongs to the window it was sent in (one sent just before the end still counts:
        # it may have waited on the attack).
        if any(start <= sent < end for start, end in windows):
            latencies.append(latency)
            failed += status != "200"
    return latencies, failed


async def health_during(
    base_url: str,
    attack: Callable[[], Awaitable[object]],
    *,
    seconds: float = 3.0,
    phase_seconds: float = 0.5,
    max_rounds: int | None = None,
) -> HealthFigures:
    """Probe `/health` in alternating phases: idle, then `attack` round after round, then idle...

    The phases alternate (each `phase_seconds`, an attack phase at least one round long) until the
    attack phases add up to `seconds`, so a change in the machine's background load weighs on both
    windows alike. Give `attack` one kept-alive client for all its rounds (creating an httpx client
    costs tens of milliseconds of CPU on this box, which would be the test's load, not the attack's).
    """
    out = tempfile.NamedTemporaryFile(prefix="probe-", suffix=".txt", delete=False)
    out.close()
    probe = _spawn(["tests.probe", base_url, out.name, str(PROBE_INTERVAL_S)], dict(os.environ), None)
    idle_windows: list[tuple[float, float]] = []
    attack_windows: list[tuple[float, float]] = []
    rounds = 0
    attacked = 0.0
    try:
        await asyncio.sleep(0.5)  # the probe's interpreter starts and connects
        while attacked < seconds and (max_rounds is None or rounds < max_rounds):
            start = time.monotonic()
            await asyncio.sleep(phase_seconds)
            idle_windows.append((start, time.monotonic()))
            start = time.monotonic()
            while time.monotonic() - start < phase_seconds and (max_rounds is None or rounds < max_rounds):
                await attack()
                rounds += 1
                await asyncio.sleep(0.02)  # the attacker's think time: the probe gets its turns
            end = time.monotonic()
            attack_windows.append((start, end))
            attacked += end - start
        await asyncio.sleep(0.2)  # the last probes of the window finish
        start = time.monotonic()
        await asyncio.sleep(phase_seconds)
        idle_windows.append((start, time.monotonic()))
    finally:
        _stop(probe, 10)
    idle, idle_failed = _read(out.name, idle_windows)
    during, failed = _read(out.name, attack_windows)
    os.unlink(out.name)
    assert idle, "the probe recorded nothing while idle"
    return HealthFigures(idle, during, rounds, attacked, failed + idle_failed)
