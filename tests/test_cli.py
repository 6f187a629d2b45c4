"""The `campaigns` CLI and the dev-stack pieces that can be checked without starting the stack."""

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import jwt
import pytest
import uvicorn

from api.deps import AppState
from api.lifecycle import CampaignControl
from api.main import create_app
from core.constants import SEARCH_ATTRIBUTES
from core.enums import CampaignStatus
from core.messages import CampaignProgress, Counts
from core.settings import Settings
from devstack import settings_doc
from devstack.captures import CaptureView
from devstack.cli import main
from devstack.demo import ApiClient, create_demo, execute_and_wait
from devstack.processes import Child
from devstack.sinks import SmsSink, SmtpSink
from devstack.stack import DevConfig, DevPorts, child_environment, shown_url, temporal_command
from devstack.status import render
from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, ledger, wait_for

ROOT = Path(__file__).resolve().parent.parent
SUBCOMMANDS = ("dev", "api", "worker", "status", "migrate", "token", "demo", "sinks", "settings")


def token_claims(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["token", *argv]) == 0
    token = capsys.readouterr().out.strip()
    claims: dict[str, Any] = jwt.decode(token, Settings().jwt_secret, algorithms=["HS256"])
    return claims


def test_help_lists_the_subcommands() -> None:
    script = Path(sys.executable).with_name("campaigns")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
    for name in SUBCOMMANDS:
        assert f"\n    {name} " in out, f"{name} missing from:\n{out}"


def test_token_decodes_to_the_requested_tenant(capsys: pytest.CaptureFixture[str]) -> None:
    claims = token_claims(capsys, "--tenant", "tenant_a")
    assert claims["tenant_id"] == "tenant_a"
    assert claims["sub"] == "user_dev"


def test_token_with_several_tenants_and_a_subject(capsys: pytest.CaptureFixture[str]) -> None:
    claims = token_claims(capsys, "--tenant", "tenant_a", "--tenant", "tenant_b", "--sub", "ops")
    assert claims["tenants"] == ["tenant_a", "tenant_b"]
    assert claims["sub"] == "ops"


def test_token_uses_the_configured_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMPAIGNS_JWT_SECRET", "another-secret-for-this-test-0123456789")
    assert main(["token", "--tenant", "tenant_a"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, "another-secret-for-this-test-0123456789", algorithms=["HS256"])
    assert claims["tenant_id"] == "tenant_a"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, Settings(jwt_secret="dev-only-secret-change-me-0123456789").jwt_secret, ["HS256"])


def test_readme_settings_table_matches_the_settings_class() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings_doc.current_block(readme) == settings_doc.readme_block(), (
        "README.md's settings table is stale: run `campaigns settings --update-readme`"
    )
    assert set(settings_doc.NOTES) <= set(Settings.model_fields), "notes for settings that no longer exist"


def test_temporal_command_registers_every_search_attribute() -> None:
    cfg = DevConfig(settings=Settings(), state_dir=Path("/tmp/state"), ports=DevPorts(temporal=7300))
    argv = temporal_command("temporal", cfg)
    assert argv[:3] == ["temporal", "server", "start-dev"]
    assert argv[argv.index("--port") + 1] == "7300"
    assert argv[argv.index("--db-filename") + 1] == "/tmp/state/temporal.db"
    pairs = {argv[i + 1] for i, arg in enumerate(argv) if arg == "--search-attribute"}
    assert pairs == {f"{key.name}=Keyword" for key in SEARCH_ATTRIBUTES}


def test_children_get_settings_that_point_at_the_stack() -> None:
    cfg = DevConfig(settings=Settings(), ports=DevPorts(api=9000, smtp=2025, sms=9025))
    base = {"PATH": "/bin", "CAMPAIGNS_SMTP_PASSWORD": "real", "CAMPAIGNS_JWT_SECRET": "kept-" + "x" * 32}
    env = child_environment(base, cfg, "postgresql://u@/db?host=/tmp")
    ours = {k for k in env if k.startswith("CAMPAIGNS_")}
    assert ours <= {f"CAMPAIGNS_{name.upper()}" for name in Settings.model_fields}
    settings = Settings.model_validate({k.removeprefix("CAMPAIGNS_").lower(): env[k] for k in ours})
    assert settings.database_url == "postgresql://u@/db?host=/tmp"
    assert settings.temporal_address == "127.0.0.1:7233"
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_password) == ("127.0.0.1", 2025, None)
    assert settings.sms_url == "http://127.0.0.1:9025/messages"
    assert settings.public_url == "http://127.0.0.1:9000"
    assert settings.jwt_secret == base["CAMPAIGNS_JWT_SECRET"]


def test_the_banner_masks_database_passwords() -> None:
    assert shown_url("postgresql://app:s3cret@db:5432/campaigns") == "postgresql://app:***@db:5432/campaigns"
    assert shown_url("postgresql://postgres:@/postgres?host=/x") == "postgresql://postgres:@/postgres?host=/x"


async def test_stopping_a_child_stops_its_whole_process_group(tmp_path: Path) -> None:
    script = "sleep 60 & echo $!; wait"
    child = await Child("shell", ["bash", "-c", script], os.environ, tmp_path, echo=False).start()
    for _ in range(100):
        if child.log_path.exists() and child.log_path.read_text().strip():
            break
        await asyncio.sleep(0.02)
    grandchild = int(child.log_path.read_text().split()[0])
    await child.stop(grace=0.3)  # bash waits on its child through SIGINT: this tests the SIGKILL path
    # The SIGKILL is sent to the whole group at once; the kernel takes a moment to end each member.
    for _ in range(250):
        if _gone(grandchild):
            break
        await asyncio.sleep(0.02)
    assert _gone(grandchild), "a grandchild outlived the stopped child"


def _gone(pid: int) -> bool:
    """Not running: no such process, or a zombie waiting for init to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


async def test_capture_page_lists_emails_and_sms() -> None:
    from aiohttp import web

    smtp = SmtpSink().start()
    sms = await SmsSink().start()
    runner = web.AppRunner(CaptureView(smtp, sms).app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await aiosmtplib.send(
            "From: a@example.com\r\nTo: b@example.com\r\nSubject: Hello <b>\r\n\r\nbody text\r\n",
            sender="a@example.com",
            recipients=["b@example.com"],
            hostname="127.0.0.1",
            port=smtp.port,
        )
        async with aiohttp.ClientSession() as http:
            await http.post(
                sms.url,
                data={"To": "+15550001111", "Body": "hi there"},
                headers={"Authorization": f"Bearer {sms.token}", "Idempotency-Key": "k1"},
            )
            emails = await (await http.get(f"http://127.0.0.1:{port}/emails")).json()
            texts = await (await http.get(f"http://127.0.0.1:{port}/sms")).json()
            page = await (await http.get(f"http://127.0.0.1:{port}/")).text()
            one = await http.get(f"http://127.0.0.1:{port}/emails/0")
            assert one.status == 200
    finally:
        await runner.cleanup()
        await sms.stop()
        smtp.stop()
    assert emails["count"] == 1 and emails["latest"][0]["subject"] == "Hello <b>"
    assert texts["count"] == 1 and texts["latest"][0]["body"] == "hi there"
    assert "Hello &lt;b&gt;" in page and "hi there" in page


class FakeApi(BaseHTTPRequestHandler):
    """Records the demo's requests and answers like the API would (ids, then a COMPLETED campaign)."""

    calls: list[tuple[str, str, dict[str, Any] | None, str]] = []

    def _answer(self, body: dict[str, Any] | None) -> None:
        self.calls.append((self.command, self.path, body, self.headers.get("Authorization", "")))
        kind = self.path.strip("/").split("/")[0].removesuffix("s")
        payload = {"id": f"{kind}_{len(self.calls)}", "status": "COMPLETED", "sentCount": 3}
        data = json.dumps(payload).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self._answer(json.loads(self.rfile.read(length)) if length else None)

    def do_GET(self) -> None:
        self._answer(None)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_api() -> Iterator[str]:
    FakeApi.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_demo_creates_everything_through_the_api(fake_api: str) -> None:
    api = ApiClient(fake_api, "tok")
    ids = create_demo(api, "tenant_x", run_tag="t1")
    campaign = execute_and_wait(api, ids.campaign_id, timeout=5)
    paths = [(method, path) for method, path, _, _ in FakeApi.calls]
    assert paths == [
        *[("POST", "/customers")] * 3,
        ("POST", "/segments"),
        ("POST", "/templates"),
        ("POST", "/templates"),
        ("POST", "/campaigns"),
        ("POST", f"/campaigns/{ids.campaign_id}/execute"),
        ("GET", f"/campaigns/{ids.campaign_id}"),
    ]
    assert all(auth == "Bearer tok" for *_, auth in FakeApi.calls)
    bodies = [body or {} for _, _, body, _ in FakeApi.calls]
    assert all(b["tenantId"] == "tenant_x" for b in bodies[:7])
    customer, segment, email, sms, created = bodies[0], bodies[3], bodies[4], bodies[5], bodies[6]
    assert {"externalId", "email", "phone", "firstName", "emailOptIn", "smsOptIn"} <= set(customer)
    assert segment == {**segment, "type": "STATIC", "customerIds": ids.customer_ids}
    assert email["channel"] == "EMAIL" and {"subject", "html", "text"} <= set(email)
    assert sms["channel"] == "SMS" and "body" in sms
    assert created == {
        **created,
        "type": "ONE_TIME",
        "segmentId": ids.segment_id,
        "channels": ["EMAIL", "SMS"],
        "emailTemplateId": ids.email_template_id,
        "smsTemplateId": ids.sms_template_id,
    }
    assert campaign["status"] == "COMPLETED"
    assert ids.lines()[-1] == f"CAMPAIGN_ID={ids.campaign_id}"


# ---- against the test stack (real Temporal, worker, Postgres, sinks) ---------------------------


async def campaigns_cli(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, str, str]:
    """Run the installed `campaigns` script without blocking the event loop (the worker lives there)."""
    script = Path(sys.executable).with_name("campaigns")
    proc = await asyncio.create_subprocess_exec(
        str(script),
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def stack_env(stack: Stack) -> dict[str, str]:
    return {
        "CAMPAIGNS_TEMPORAL_ADDRESS": stack.settings.temporal_address,
        "CAMPAIGNS_TASK_QUEUE": stack.task_queue,
        "CAMPAIGNS_DATABASE_URL": str(stack.settings.database_url),
    }


async def test_token_and_status_against_the_test_stack(make_stack: StackFactory) -> None:
    stack = await make_stack()
    code, token, _ = await campaigns_cli("token", "--tenant", stack.tenant)
    assert code == 0
    listed = await stack.api.get(
        "/campaigns", params={"tenantId": stack.tenant}, headers={"Authorization": f"Bearer {token.strip()}"}
    )
    assert listed.status_code == 200, listed.text

    audience = await make_audience(stack.engine, stack.tenant, 4)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t)
    code, out, err = await campaigns_cli("status", cid, "--once", env=stack_env(stack))
    assert code == 0, err
    assert f"{cid} DRAFT" in out and "not started" in out

    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    code, out, err = await campaigns_cli("status", cid, "--interval", "0.2", env=stack_env(stack))
    assert code == 0, err
    last = out.strip().splitlines()[-1]  # it follows the campaign until it completes
    assert f"{cid} COMPLETED" in last and "100.0% 4/4" in last and "sent 8" in last, out
    await wait_for(stack, cid, "COMPLETED")

    code, _, err = await campaigns_cli("status", "campaign_0000000000000000", "--once", env=stack_env(stack))
    assert code == 1 and "no workflow campaign-campaign_0000000000000000" in err


async def test_demo_against_the_test_stack(make_stack: StackFactory) -> None:
    stack = await make_stack()
    control = CampaignControl(stack.client, stack.task_queue, batches_per_run=stack.settings.batches_per_run)
    app = create_app(stack.settings, AppState(settings=stack.settings, engine=stack.engine, control=control))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False))
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        api = f"http://127.0.0.1:{port}"
        code, out, err = await campaigns_cli(
            "demo", "--api", api, "--tenant", stack.tenant, "--execute", "--timeout", "60"
        )
    finally:
        server.should_exit = True
        await serving
    assert code == 0, err
    values = dict(line.split("=", 1) for line in out.strip().splitlines())
    # The demo creates three opted-in customers with an email and a phone each.
    assert values["STATUS"] == "COMPLETED" and values["SENT_COUNT"] == "3"
    campaign = await stack.call("GET", f"/campaigns/{values['CAMPAIGN_ID']}")
    assert campaign.status_code == 200
    assert (campaign.json()["status"], campaign.json()["sentCount"]) == ("COMPLETED", 3)
    rows = await ledger(stack, values["CAMPAIGN_ID"])
    assert (
        sorted((r["channel"], r["outcome"]) for r in rows) == [("EMAIL", "SENT")] * 3 + [("SMS", "SENT")] * 3
    )
    emails = {r["address"] for r in rows if r["channel"] == "EMAIL"}
    assert stack.smtp.counts(emails) == dict.fromkeys(emails, 1)
    sms = {r["providerMessageId"] for r in rows if r["channel"] == "SMS"}
    assert {m.sid for m in stack.sms.messages} >= sms


def test_status_line_draws_a_bar_of_recipients_processed() -> None:
    progress = CampaignProgress(
        campaign_id="campaign_1",
        status=CampaignStatus.ACTIVE,
        target_count=1000,
        processed=250,
        sent_recipients=240,
        counts=Counts(sent=400, skipped=20),
        snapshot_complete=True,
        batch_running=True,
        scheduled_at=None,
        last_error=None,
    )
    line = render(progress, width=20)
    assert line.startswith("campaign_1 ACTIVE    [#####---------------]  25.0% 250/1000")
    assert "sent 400, skipped 20, failed 0" in line
