"""Issue 9 acceptance: the README's walk-through, followed verbatim, against a real `campaigns dev`.

The bash block under "## Walk-through" in README.md is extracted and run with bash while the dev
stack runs, as a reader would run it in a second terminal at the repository root. The one change
made to the text: the dev stack's fixed ports in its URLs (the API on 8000, the SMS capture on 8025,
the capture page on 8026) become free ports, on which this test starts `campaigns dev` (Temporal
dev server, the SMTP/SMS captures, migrations, a worker and the API). Postgres is the test session's
database (CAMPAIGNS_TEST_DATABASE_URL or the embedded pgserver), given to the stack as
CAMPAIGNS_DATABASE_URL, exactly as a user with their own Postgres would. Nothing depends on ports
8000/8025/8026 being free.

bash runs the block with `-e -o pipefail`, so a step that fails (a request answered with an error
has no `id` for `json_id`) fails the test at that step instead of going on with empty ids.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from devstack.stack import DevConfig, DevPorts, child_environment

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HOST = "127.0.0.1"
READY = "Campaigns dev stack is ready."
# The fixed ports of the walk-through and the DevPorts field each one belongs to.
WALKTHROUGH_PORTS = {8000: "api", 8025: "sms", 8026: "captures"}


def walkthrough_script(readme: str) -> str:
    """The first ```bash block of the section "## Walk-through"."""
    section = readme.split("\n## Walk-through\n", 1)[1]
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    match = re.search(r"\n```bash\n(.*?)\n```\n", section, re.DOTALL)
    assert match is not None, "no ```bash block under ## Walk-through"
    return match.group(1) + "\n"


def with_ports(script: str, ports: DevPorts) -> str:
    """The script with its URLs pointed at `ports`: the only change made to the README's text."""
    for fixed, name in WALKTHROUGH_PORTS.items():
        url = f"http://{HOST}:{fixed}"
        assert url in script, f"the walk-through no longer uses {url}: update WALKTHROUGH_PORTS"
        script = script.replace(url, f"http://{HOST}:{getattr(ports, name)}")
    return script


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


# ---- without a stack -----------------------------------------------------------------------------


def test_the_walkthrough_block_is_found_and_only_its_ports_change() -> None:
    script = walkthrough_script(README.read_text())
    assert script.startswith("API=http://127.0.0.1:8000\n")
    assert ".venv/bin/campaigns token --tenant tenant_demo" in script
    moved = with_ports(script, DevPorts(api=18000, sms=18025, captures=18026))
    assert not re.search(r":80(00|25|26)\b", moved)
    assert moved.replace(":18000", ":8000").replace(":18025", ":8025").replace(":18026", ":8026") == script


def test_the_dev_stack_logs_text_unless_the_user_chose_a_format() -> None:
    cfg = DevConfig(settings=Settings())
    assert child_environment({}, cfg, "postgresql://x")["CAMPAIGNS_LOG_FORMAT"] == "text"
    chosen = child_environment({"CAMPAIGNS_LOG_FORMAT": "json"}, cfg, "postgresql://x")
    assert chosen["CAMPAIGNS_LOG_FORMAT"] == "json"


# ---- against `campaigns dev` ------------------------------------------------------------------------


@pytest.fixture
def dev_stack(database_url: str, tmp_path: Path) -> Iterator[tuple[DevPorts, dict[str, str], Path]]:
    """`campaigns dev` on free ports, ready; stopped with Ctrl-C's SIGINT afterwards."""
    api, temporal, ui, smtp, sms, captures = free_ports(6)
    ports = DevPorts(api=api, temporal=temporal, temporal_ui=ui, smtp=smtp, sms=sms, captures=captures)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    env["CAMPAIGNS_DATABASE_URL"] = database_url
    state = tmp_path / "devstack"
    argv = [
        str(Path(sys.executable).with_name("campaigns")), "dev", "--state-dir", str(state),
        "--api-port", str(api), "--temporal-port", str(temporal), "--temporal-ui-port", str(ui),
        "--smtp-port", str(smtp), "--sms-port", str(sms), "--captures-port", str(captures),
    ]  # fmt: skip
    out = tmp_path / "dev.out"
    with out.open("wb") as sink:
        dev = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 45
        while READY not in out.read_text(errors="replace"):
            assert dev.poll() is None, f"campaigns dev exited:\n{out.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"campaigns dev not ready:\n{out.read_text()[-4000:]}"
            time.sleep(0.2)
        yield ports, env, state
    finally:
        if dev.poll() is None:
            dev.send_signal(signal.SIGINT)
            try:
                dev.wait(30)
            except subprocess.TimeoutExpired:
                dev.kill()
                dev.wait()


def test_the_readme_walkthrough_runs_verbatim(dev_stack: tuple[DevPorts, dict[str, str], Path]) -> None:
    ports, env, state = dev_stack
    assert (ROOT / ".venv/bin/campaigns").exists(), "the walk-through calls .venv/bin/campaigns"
    script = with_ports(walkthrough_script(README.read_text()), ports)
    run = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=40,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    # The polling loop ended on COMPLETED with both recipients sent.
    assert run.stdout.count("COMPLETED sent: 2") == 1, run.stdout
    # The ledger it printed: two recipients, two channels each, all sent.
    assert run.stdout.count('"outcome": "SENT"') == 4, run.stdout

    sms = get_json(f"http://{HOST}:{ports.sms}/messages")
    assert sms["count"] == 2
    assert {(m["to"], m["body"]) for m in sms["latest"]} == {
        ("+15550100001", "Hi Ada, the gold tee times are open."),
        ("+15550100002", "Hi Grace, the silver tee times are open."),
    }
    emails = get_json(f"http://{HOST}:{ports.captures}/emails")
    assert emails["count"] == 2
    assert {(tuple(m["to"]), m["subject"]) for m in emails["latest"]} == {
        (("ada@example.com",), "Tee time, Ada?"),
        (("grace@example.com",), "Tee time, Grace?"),
    }
    assert all("book now" in m["text"] for m in emails["latest"])

    # `campaigns dev` logs text, not JSON lines, when the user did not choose a format.
    lines = (state / "logs" / "worker.log").read_text().splitlines()
    assert any(" INFO " in line for line in lines), lines[-20:]
    assert not any(line.startswith("{") for line in lines), lines[-20:]
