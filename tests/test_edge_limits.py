"""Issue 13, classes 9 and 10: safe configuration, token limits and the API's edge limits.

- a deployment that is not explicitly `development` or `test` refuses the published secrets and short
  ones, at startup, in one line naming the setting;
- tokens: a bounded lifetime (1e308 is not forever), `iss`/`aud` when configured;
- header sizes (431, also through the real server, with `/health` unaffected), tenant and address
  rate budgets (429 with Retry-After; other tenants unaffected), tracking replays counted once, and
  database errors logged without the request's values.
"""

import asyncio
import logging
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text

from api.deps import AppState
from api.main import create_app
from core.settings import DEV_SECRET, Settings
from db.engine import make_engine
from devstack.cli import main as cli_main
from tests.attack import api_process, unaffected
from tests.conftest import Stack, StackFactory
from tests.test_stats import build_ledger

ROOT = Path(__file__).resolve().parent.parent
STRONG = "s" * 40  # a private-looking secret of the required length
PROBLEM = "application/problem+json"


def _strong(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "environment": "production",
        "jwt_secret": STRONG,
        "tracking_secret": "t" * 40,
        "webhook_secret": "w" * 40,
        "secret_key": "k" * 40,
        "sms_token": "provider-token",
        "database_url": "postgresql://campaigns@db.internal/campaigns",
    }
    values.update(overrides)
    return values


# ---- class 9: safe configuration ------------------------------------------------------------------


ALL_DEFAULTS = (
    "CAMPAIGNS_JWT_SECRET must be set: its default is public; "
    "CAMPAIGNS_TRACKING_SECRET must be set: its default is public; "
    "CAMPAIGNS_WEBHOOK_SECRET must be set: its default is public; "
    "CAMPAIGNS_SECRET_KEY must be set: its default is public; "
    "CAMPAIGNS_SMS_TOKEN must be set: its default is public; "
    "CAMPAIGNS_DATABASE_URL must be set: the embedded Postgres is for development and test"
)


@pytest.mark.parametrize(
    ("values", "environment", "problems"),
    [
        ({"environment": "Production"}, "Production", ALL_DEFAULTS),
        ({"environment": "prod"}, "prod", ALL_DEFAULTS),
        ({}, "production", ALL_DEFAULTS),  # CAMPAIGNS_ENVIRONMENT unset
        (
            _strong(jwt_secret="x" * 20),
            "production",
            "CAMPAIGNS_JWT_SECRET must be at least 32 bytes long",
        ),
        (
            _strong(environment="staging", webhook_secret="é" * 15),  # 30 bytes, 15 characters
            "staging",
            "CAMPAIGNS_WEBHOOK_SECRET must be at least 32 bytes long",
        ),
        (
            _strong(sms_token="dev-sms-token"),
            "production",
            "CAMPAIGNS_SMS_TOKEN must be set: its default is public",
        ),
        (
            _strong(secret_key="k" * 31),
            "production",
            "CAMPAIGNS_SECRET_KEY must be at least 32 bytes long",
        ),
        (
            _strong(tracking_secret=DEV_SECRET),
            "production",
            "CAMPAIGNS_TRACKING_SECRET must be set: its default is public",
        ),
    ],
    ids=[
        "Production",
        "prod",
        "unset",
        "short-jwt",
        "short-utf8-webhook",
        "default-sms",
        "short-secret-key",
        "default-tracking",
    ],
)
def test_unsafe_configuration_is_refused_naming_the_setting(
    values: dict[str, Any], environment: str, problems: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAMPAIGNS_ENVIRONMENT", raising=False)
    with pytest.raises(ValueError) as refused:
        Settings(**values)
    message = refused.value.errors()[0]["msg"]  # type: ignore[attr-defined]
    assert message == (
        f"Value error, CAMPAIGNS_ENVIRONMENT is {environment!r} (unset means production), not "
        f"`development` or `test`, so {problems}"
    )
    for secret in (STRONG, DEV_SECRET, "x" * 20):
        assert secret not in message


def test_development_test_and_a_safe_production_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAMPAIGNS_ENVIRONMENT", raising=False)
    assert Settings(environment="development").jwt_secret == DEV_SECRET
    assert Settings(environment="test").sms_token == "dev-sms-token"
    assert Settings(**_strong()).environment == "production"
    # With RS256 the shared secret is unused, so its default is no risk.
    assert Settings(**_strong(jwt_secret=DEV_SECRET, jwt_public_key="-----BEGIN PUBLIC KEY-----")).jwt_secret


def test_the_api_process_refuses_to_start_in_one_line() -> None:
    env = {"PATH": "/usr/bin:/bin", "CAMPAIGNS_ENVIRONMENT": "prod", "CAMPAIGNS_JWT_SECRET": "short-secret"}
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "campaigns: refusing to start: CAMPAIGNS_ENVIRONMENT is 'prod' (unset means production), not "
        "`development` or `test`, so CAMPAIGNS_JWT_SECRET must be at least 32 bytes long; "
        "CAMPAIGNS_TRACKING_SECRET must be set: its default is public; CAMPAIGNS_WEBHOOK_SECRET must be "
        "set: its default is public; CAMPAIGNS_SECRET_KEY must be set: its default is public; "
        "CAMPAIGNS_SMS_TOKEN must be set: its default is public; "
        "CAMPAIGNS_DATABASE_URL must be set: the embedded Postgres is for development and test"
    ]


def test_production_without_a_database_url_refuses_to_start_in_one_line() -> None:
    """Unset, the URL means the embedded development Postgres: a deployment must never start one
    (a private, empty database). Every secret here is strong, so the URL is the only problem."""
    env = {
        "PATH": "/usr/bin:/bin",
        "CAMPAIGNS_ENVIRONMENT": "production",
        "CAMPAIGNS_JWT_SECRET": STRONG,
        "CAMPAIGNS_TRACKING_SECRET": "t" * 40,
        "CAMPAIGNS_WEBHOOK_SECRET": "w" * 40,
        "CAMPAIGNS_SECRET_KEY": "k" * 40,
        "CAMPAIGNS_SMS_TOKEN": "provider-token",
    }
    for command in (["-m", "uvicorn", "api.main:app", "--port", "0"], ["worker.py"]):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode != 0, command
        assert done.stderr.strip().splitlines() == [
            "campaigns: refusing to start: CAMPAIGNS_ENVIRONMENT is 'production' (unset means "
            "production), not `development` or `test`, so CAMPAIGNS_DATABASE_URL must be set: the "
            "embedded Postgres is for development and test"
        ], command
        assert time.monotonic() - started < 30, command  # at once: no embedded server was started


# ---- class 10: tokens ------------------------------------------------------------------------------


def _token(stack: Stack, tenant: str | None = None, **claims: Any) -> dict[str, str]:
    now = int(time.time())
    body: dict[str, Any] = {"sub": "user_edge", "tenant_id": tenant or stack.tenant}
    body.update(iat=now, exp=now + 60)
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return {"Authorization": "Bearer " + jwt.encode(body, stack.settings.jwt_secret, algorithm="HS256")}


async def _list(stack: Stack, headers: dict[str, str], tenant: str | None = None) -> httpx.Response:
    return await stack.api.get("/campaigns", params={"tenantId": tenant or stack.tenant}, headers=headers)


async def test_token_lifetime_is_bounded_and_exp_must_be_finite(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False, jwt_max_age=3600)
    now = int(time.time())
    assert (await _list(stack, _token(stack, exp=now + 3600))).status_code == 200
    cases = {
        "exp 1e308": _token(stack, exp=1e308),
        "exp 10**400": _token(stack, exp=10**400),
        "exp Infinity": _token(stack, exp=float("inf")),
        "exp NaN": _token(stack, exp=float("nan")),
        "lifetime over the max": _token(stack, exp=now + 3600 + 120),
        "no iat, over the max": _token(stack, iat=None, exp=now + 3600 + 120),
        "iat long ago": _token(stack, iat=now - 10 * 86_400, exp=now + 60),
    }
    for name, headers in cases.items():
        r = await _list(stack, headers)
        assert r.status_code == 401, (name, r.text)
        assert r.headers["content-type"] == PROBLEM and r.json()["status"] == 401, name


async def test_issuer_and_audience_are_checked_when_configured(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False, jwt_issuer="https://id.example", jwt_audience="campaigns-api")
    assert (await _list(stack, stack.headers())).status_code == 200  # issue_token carries both
    good: dict[str, str | None] = {"iss": "https://id.example", "aud": "campaigns-api"}
    assert (await _list(stack, _token(stack, **good))).status_code == 200
    bad: dict[str, dict[str, str | None]] = {
        "wrong iss": {**good, "iss": "https://evil.example"},
        "no iss": {**good, "iss": None},
        "wrong aud": {**good, "aud": "another-service"},
        "no aud": {**good, "aud": None},
    }
    for name, claims in bad.items():
        r = await _list(stack, _token(stack, **claims))
        assert r.status_code == 401 and r.headers["content-type"] == PROBLEM, (name, r.text)


def test_campaigns_token_issues_within_the_max_age(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMPAIGNS_JWT_MAX_AGE", "7200")
    assert cli_main(["token", "--tenant", "tenant_a"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), DEV_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 7200
    assert cli_main(["token", "--tenant", "tenant_a", "--ttl", "7201"]) == 2
    assert "--ttl must be 1..7200 seconds" in capsys.readouterr().err


# ---- class 10: header sizes ------------------------------------------------------------------------


async def test_oversized_headers_are_431_in_the_app(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    one_big = {"Authorization": "Bearer " + "a" * 9000}
    many = {f"X-Filler-{i}": "f" * 4000 for i in range(5)}  # each fine, 20 KB together
    for headers in (one_big, {**stack.headers(), **many}):
        r = await stack.api.get("/campaigns", params={"tenantId": stack.tenant}, headers=headers)
        assert r.status_code == 431, r.text
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["title"] == "Request Header Fields Too Large"
    fine = {**stack.headers(), "X-Filler": "f" * 4000}
    assert (await _list(stack, fine)).status_code == 200


class _HugeHeader(asyncio.Protocol):
    """A client that streams a request head without end and keeps whatever the server answers
    (read as it arrives: the reset that follows the server's close must not lose it)."""

    def __init__(self) -> None:
        self.answer = b""
        self.answered = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.answer += data
        self.answered.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.answered.set()
        self.writable.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


async def _huge_header_round(port: int, size: int = 50 * 1024 * 1024) -> float:
    """Start a request whose Authorization header is `size` bytes; return the seconds until the
    server's answer, which must be a 431 long before the header could have been sent."""
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(_HugeHeader, "127.0.0.1", port)
    transport.write(b"GET /campaigns HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer ")
    chunk = b"a" * 65536
    sent = 0
    while sent < size and not client.answered.is_set() and not transport.is_closing():
        transport.write(chunk)
        sent += len(chunk)
        await asyncio.wait(
            [asyncio.ensure_future(client.writable.wait()), asyncio.ensure_future(client.answered.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
    await asyncio.wait_for(client.answered.wait(), timeout=10)
    transport.abort()
    assert client.answer.startswith(b"HTTP/1.1 431 "), client.answer[:200]
    assert b"application/problem+json" in client.answer
    # The server stopped reading long before 50 MB (what was written sat in socket buffers).
    assert sent < size // 4, sent
    return time.monotonic() - started


async def test_a_50_mb_header_is_refused_fast_by_the_real_server(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    async with api_process(stack, UVICORN_HTTP="api.edge:HttpToolsWithHeadLimit") as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        assert await _huge_header_round(port) < 1.0
        await unaffected(base_url, lambda: _huge_header_round(port), seconds=2.0)
        async with httpx.AsyncClient(base_url=base_url) as client:
            r = await client.get("/campaigns", params={"tenantId": stack.tenant}, headers=stack.headers())
            assert r.status_code == 200


# ---- class 10: rate budgets ------------------------------------------------------------------------


async def test_a_flooding_tenant_gets_429_and_others_do_not(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False, rate_limit_tenant_per_second=0.5, rate_limit_tenant_burst=5)
    statuses = [(await _list(stack, stack.headers())).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    r = await _list(stack, stack.headers())
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert r.headers["content-type"] == PROBLEM and r.json()["title"] == "Too Many Requests"
    # Another tenant, from the same address: its own budget.
    other = stack.headers(stack.other_tenant)
    assert [(await _list(stack, other, stack.other_tenant)).status_code for _ in range(5)] == [200] * 5
    # Invalid tokens naming the tenant spend nothing of its budget: it is 401, not 429.
    claims = {"sub": "x", "tenant_id": stack.other_tenant, "exp": time.time() + 60}
    forged = {"Authorization": "Bearer " + jwt.encode(claims, "not-the-secret-" * 3)}
    assert [(await _list(stack, forged, stack.other_tenant)).status_code for _ in range(3)] == [401] * 3
    assert (await stack.api.get("/health")).status_code == 200  # probes are never limited


async def test_the_address_budget_and_the_tracking_budget_are_separate(make_stack: StackFactory) -> None:
    stack = await make_stack(
        worker=False,
        rate_limit_ip_per_second=0.5,
        rate_limit_ip_burst=3,
        rate_limit_tracking_ip_per_second=0.5,
        rate_limit_tracking_ip_burst=4,
    )
    anonymous = [(await stack.api.get("/campaigns")).status_code for _ in range(4)]
    assert anonymous == [401, 401, 401, 429]
    pixels = [(await stack.api.get("/t/o/not-a-token")).status_code for _ in range(5)]
    assert pixels == [200] * 4 + [429]
    assert (await stack.api.get("/t/o/not-a-token")).headers["retry-after"] == "2"
    assert (await stack.api.get("/metrics")).status_code == 200


def test_the_limiter_forgets_idle_keys_and_stays_bounded() -> None:
    from api.edge import RateLimiter

    limiter = RateLimiter(rate=10.0, burst=2, max_keys=100)
    for i in range(1000):
        assert limiter.take([f"10.0.{i // 256}.{i % 256}"], now=0.0) == 0.0
    assert len(limiter) == 100
    assert limiter.take(["10.0.3.231"], 0.0) == 0.0
    assert limiter.take(["10.0.3.231"], 0.0) == pytest.approx(0.1)
    for i in range(60):  # every bucket full again after 0.2 s: forgotten as new requests come
        limiter.take([f"late-{i}"], now=10.0)
    assert len(limiter) == 60


async def test_tenant_flood_through_the_real_server_leaves_others_and_health_alone(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(worker=False)
    limits = {"CAMPAIGNS_RATE_LIMIT_TENANT_PER_SECOND": "1", "CAMPAIGNS_RATE_LIMIT_TENANT_BURST": "3"}
    async with api_process(stack, **limits) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        flooder, other = stack.headers(), stack.headers(stack.other_tenant)
        seen: list[int] = []
        others: list[int] = []
        last_other = [0.0]

        async def flood() -> None:
            r = await client.get("/campaigns", params={"tenantId": stack.tenant}, headers=flooder)
            seen.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
            # The other tenant, from the same address, within its own (equally small) budget:
            # at most one request a second, so every one of them must pass.
            if time.monotonic() - last_other[0] >= 1.1:
                last_other[0] = time.monotonic()
                o = await client.get("/campaigns", params={"tenantId": stack.other_tenant}, headers=other)
                others.append(o.status_code)

        await unaffected(base_url, flood, seconds=2.0)
        print(f"flood: {seen.count(200)} x 200, {seen.count(429)} x 429")
        assert set(seen) == {200, 429} and seen.count(429) > seen.count(200)
        assert others and set(others) == {200}


# ---- class 10: tracking replays --------------------------------------------------------------------


async def _rows(stack: Stack, campaign_id: str, type_: str) -> int:
    async with stack.engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text("SELECT count(*) FROM interactions WHERE campaign_id = :c AND type = :t"),
                    {"c": campaign_id, "t": type_},
                )
            ).scalar_one()
        )


async def test_a_replayed_tracking_link_records_one_interaction(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    now = datetime.now(UTC)
    ledger = await build_ledger(stack, targets=2, email_sent=2, sms_sent=0, sent_at=lambda i: now)
    pixel, click = ledger.links(0, "o")[0], ledger.links(0, "c")[0]
    for _ in range(5):
        assert (await stack.api.get(pixel)).status_code == 200
        assert (await stack.api.get(click)).status_code == 302
    assert await _rows(stack, ledger.campaign_id, "OPENED") == 1
    assert await _rows(stack, ledger.campaign_id, "CLICKED") == 1
    stats = await ledger.stats()
    assert stats["openedCount"] == 1 and stats["clickedCount"] == 1
    async with stack.engine.connect() as conn:
        counters = {
            (r[0], r[1]): (int(r[2]), int(r[3]))
            for r in await conn.execute(
                text("SELECT channel, type, recipients, events FROM campaign_counters WHERE campaign_id=:c"),
                {"c": ledger.campaign_id},
            )
        }
    assert counters[("ALL", "OPENED")] == (1, 1) and counters[("ALL", "CLICKED")] == (1, 1)
    # Another client (a second device) is another open.
    assert (await stack.api.get(pixel, headers={"User-Agent": "PhoneMail/2"})).status_code == 200
    assert await _rows(stack, ledger.campaign_id, "OPENED") == 2


async def test_an_open_after_the_window_counts_again(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False, tracking_dedupe_seconds=1)
    now = datetime.now(UTC)
    ledger = await build_ledger(stack, targets=1, email_sent=1, sms_sent=0, sent_at=lambda i: now)
    pixel = ledger.links(0, "o")[0]
    await stack.api.get(pixel)
    await asyncio.sleep(1.1)
    await stack.api.get(pixel)
    assert await _rows(stack, ledger.campaign_id, "OPENED") == 2


# ---- class 10: database errors in logs -------------------------------------------------------------


async def test_a_database_error_is_logged_without_its_values(
    stack_settings_and_url: tuple[Settings, str], caplog: pytest.LogCaptureFixture
) -> None:
    settings, url = stack_settings_and_url
    engine = make_engine(url)
    app = create_app(settings, AppState(settings=settings, engine=engine, control=None))
    secret = "sk_live_7Hq2SECRETVALUE"

    async def boom() -> dict[str, str]:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT CAST(:v AS integer)"), {"v": secret})
        return {}

    app.add_api_route("/boom", boom, methods=["GET"])
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://testserver"
        ) as client:
            with caplog.at_level(logging.ERROR, logger="campaigns.api"):
                r = await client.get("/boom")
    finally:
        await engine.dispose()
    assert r.status_code == 500 and r.json()["detail"] == "internal error"
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "campaigns.api"]
    assert logged == [
        "unhandled error on GET /boom: DataError (InvalidTextRepresentation, SQLSTATE 22P02) "
        "in: SELECT CAST(%(v)s AS integer)"
    ]
    assert secret not in caplog.text and "SECRETVALUE" not in str(r.content)
    assert engine.sync_engine.hide_parameters is True  # also for errors logged elsewhere


@pytest.fixture
async def stack_settings_and_url(make_stack: StackFactory) -> tuple[Settings, str]:
    stack = await make_stack(worker=False)
    return stack.settings, str(stack.settings.database_url)
