"""Every benchmark runs, at a small size, so none of them rots (issue 7).

CI does not time them: each is run once as its README command would run it, with small arguments,
and must exit 0 and print its table. The figures come from the full-size runs (README "Performance").
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SMOKE = {
    # (aiosmtplib's client here; the throughput run's ceiling takes the campaign's own)
    "ceiling": ["--messages", "300", "--email-client", "aiosmtplib"],
    "throughput": ["--recipients", "300", "--ceiling-messages", "300"],
    "send_bench": ["--recipients", "200"],
    "lifecycle_bench": ["--recipients", "15000", "--rounds", "1"],
    "events_bench": ["--events", "200", "--customers", "50", "--clients", "8"],
    "api_bench": ["--campaigns", "300", "--deliveries", "300", "--requests", "100", "--clients", "8"],
    "stats_bench": ["--interactions", "3000", "--calls", "5"],
    "ledger_bench": ["--messages", "2000"],
    "audience_bench": ["--recipients", "3000", "--pages", "1"],
    "rate_limits": (
        "--rate 100 --big 400 --small 20 --window 2 --warmup 1 --workers 1 --report-only".split()
    ),
}

# What a smoke run must report, where its arguments fix it: the messages it says it sent are the
# ones its own reconciliation counted (send_bench: 200 emails, and an SMS for the 180 of the 200
# recipients who have a phone; ceiling: each channel's 300 messages).
REPORTED = {
    "send_bench": ["messages sent: 380 (email 200, sms 180)"],
    "ceiling": ["| EMAIL | 300 |", "| SMS | 300 |"],
    "ledger_bench": ["ledger checked: 2,000 SENT rows, 2,000 recipients counted"],
}


def test_every_benchmark_has_a_smoke_run() -> None:
    modules = {p.stem for p in (ROOT / "bench").glob("*.py")} - {"__init__", "harness", "cpu"}  # helpers
    assert modules == set(SMOKE), modules ^ set(SMOKE)


@pytest.mark.bench_smoke
@pytest.mark.parametrize("module", sorted(SMOKE))
def test_benchmark_runs_small(module: str) -> None:
    env = {**os.environ, "CAMPAIGNS_BENCH_DATABASE_URL": _admin_url()}
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *SMOKE[module]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.strip(), done.stderr[-4000:]  # its figures
    for line in REPORTED.get(module, []):
        assert line in done.stdout, done.stdout[-2000:]


def _admin_url() -> str:
    return os.environ.get(
        "CAMPAIGNS_BENCH_DATABASE_URL",
        os.environ.get("CAMPAIGNS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
