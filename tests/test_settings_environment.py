"""`core.settings.as_environment`: the variables a test or benchmark gives the processes it starts
must read back as exactly its own settings, maps and booleans included."""

import os

import pytest

from core.settings import AccountRateLimit, Settings, as_environment


def _read_back(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`Settings()` as a child process started with only `env` would build it."""
    for name in [k for k in os.environ if k.startswith("CAMPAIGNS_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_every_setting_reads_back_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        environment="test",
        database_url="postgresql://someone@127.0.0.1:5999/elsewhere",
        sms_idempotent=True,
        webhook_allow_private=True,
        sms_in_flight=7,
        shutdown_grace_seconds=12.5,
        sms_quiet_hours_default="",
        worker_metrics_port=9123,
        rate_limits={
            "email": AccountRateLimit(per_second=14, per_day=50_000),
            "sms": AccountRateLimit(per_second=0.5),
        },
    )
    env = as_environment(settings)

    assert env["CAMPAIGNS_SMS_IDEMPOTENT"] == "true"
    assert (
        env["CAMPAIGNS_RATE_LIMITS"]
        == '{"email": {"perSecond": 14.0, "perDay": 50000}, "sms": {"perSecond": 0.5}}'
    )
    assert "CAMPAIGNS_JWT_PUBLIC_KEY" not in env  # unset stays unset, not the text "None"
    assert _read_back(env, monkeypatch) == settings


def test_the_defaults_read_back_too(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(environment="test")
    env = as_environment(settings)

    assert env["CAMPAIGNS_RATE_LIMITS"] == "{}"
    assert _read_back(env, monkeypatch) == settings
