"""Several API processes, one set of metrics (issue 19): `PROMETHEUS_MULTIPROC_DIR` mode.

Two real processes count requests into the API's own series (core.metrics); a scrape from a
third process, through core.metrics_multiprocess, sees the sum of both, as a scrape that any
worker of `uvicorn --workers 2` answers must.
"""

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent

WORKER = """
import sys
from core import metrics
for _ in range(int(sys.argv[1])):
    metrics.observe_request("GET", "/health/live", 200, 0.001)
"""

SCRAPE = """
import sys
from core.metrics_multiprocess import exposition
sys.stdout.write(exposition().decode())
"""


def _run(code: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _requests(text: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_requests_total") and sample.labels.get("route") == "/health/live":
                total += sample.value
    return total


def test_a_scrape_sums_the_requests_of_every_api_process(tmp_path: Path) -> None:
    from core.metrics_multiprocess import empty_directory

    (tmp_path / "stale.db").write_bytes(b"left by a previous server")
    empty_directory(str(tmp_path))
    assert not list(tmp_path.iterdir())
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "CAMPAIGNS_ENVIRONMENT": "test"}
    _run(WORKER, env, "3")
    _run(WORKER, env, "4")
    assert _requests(_run(SCRAPE, env)) == 7
    # Without the mode, a process sees only its own series.
    single = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    assert _requests(_run(SCRAPE, single)) == 0
