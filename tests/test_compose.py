"""docker-compose.yml agrees with the code: settings names, entry points, hosts and ports.

There is no Docker engine where the tests run, so the file is parsed and cross-checked instead.
"""

import importlib
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from core.constants import SEARCH_ATTRIBUTES
from core.settings import Settings
from devstack.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
OUR_SERVICES = ("api", "worker", "migrate", "sms-capture")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment", {})
    if isinstance(env, list):
        pairs = [item.split("=", 1) for item in env]
        return {p[0]: (p[1] if len(p) > 1 else None) for p in pairs}
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def published(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) pairs from "HOST:CONTAINER" entries."""
    pairs = set()
    for entry in service.get("ports", []):
        host, container = str(entry).rsplit(":", 2)[-2:]
        pairs.add((int(host), int(container)))
    return pairs


def campaigns_env(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, str | None]]:
    return {
        name: {k: v for k, v in environment(svc).items() if k.startswith("CAMPAIGNS_")}
        for name, svc in services.items()
    }


def test_the_expected_services_exist(services: dict[str, dict[str, Any]]) -> None:
    expected = {"postgres", "temporal", "temporal-admin-tools", "temporal-ui", "mailpit", "api", "worker"}
    assert expected | {"migrate"} <= set(services)
    assert str(services["postgres"]["image"]).startswith("postgres:16")
    assert str(services["temporal"]["image"]).startswith("temporalio/")


def test_every_campaigns_variable_is_a_settings_field(services: dict[str, dict[str, Any]]) -> None:
    fields = {f"CAMPAIGNS_{name.upper()}" for name in Settings.model_fields}
    for service, env in campaigns_env(services).items():
        unknown = set(env) - fields
        assert not unknown, f"{service} sets variables the code never reads: {sorted(unknown)}"


def test_our_services_get_the_contract_settings(services: dict[str, dict[str, Any]]) -> None:
    required = {
        "CAMPAIGNS_DATABASE_URL",
        "CAMPAIGNS_TEMPORAL_ADDRESS",
        "CAMPAIGNS_TEMPORAL_NAMESPACE",
        "CAMPAIGNS_TASK_QUEUE",
        "CAMPAIGNS_JWT_SECRET",
        "CAMPAIGNS_PUBLIC_URL",
        "CAMPAIGNS_TRACKING_SECRET",
        "CAMPAIGNS_SECRET_KEY",  # the worker opens what the API sealed
        "CAMPAIGNS_SMTP_HOST",
        "CAMPAIGNS_SMTP_PORT",
        "CAMPAIGNS_SMTP_STARTTLS",
        "CAMPAIGNS_EMAIL_FROM",
        "CAMPAIGNS_SMS_URL",
        "CAMPAIGNS_SMS_TOKEN",
    }
    envs = campaigns_env(services)
    for service in OUR_SERVICES:
        missing = required - set(envs[service])
        assert not missing, f"{service} lacks {sorted(missing)}"
    # api and worker must agree on everything, or the worker sends what the API never sees.
    assert envs["api"] == envs["worker"]


def test_the_values_are_valid_settings(services: dict[str, dict[str, Any]]) -> None:
    for service in OUR_SERVICES:
        given = {
            k.removeprefix("CAMPAIGNS_").lower(): v
            for k, v in campaigns_env(services)[service].items()
            if v is not None  # passed through from the user's shell
        }
        Settings.model_validate(given)


def test_the_settings_point_at_services_that_listen_there(services: dict[str, dict[str, Any]]) -> None:
    env = campaigns_env(services)["api"]
    assert env["CAMPAIGNS_DATABASE_URL"] is not None
    db = urlsplit(env["CAMPAIGNS_DATABASE_URL"])
    assert (db.hostname, db.port) == ("postgres", 5432)
    postgres = environment(services["postgres"])
    assert (db.username, db.password, db.path.lstrip("/")) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )

    assert env["CAMPAIGNS_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert (env["CAMPAIGNS_SMTP_HOST"], env["CAMPAIGNS_SMTP_PORT"]) == ("mailpit", "1025")
    assert env["CAMPAIGNS_SMS_URL"] is not None
    sms = urlsplit(env["CAMPAIGNS_SMS_URL"])
    assert sms.hostname in services
    sink = command(services[str(sms.hostname)])
    assert sink[:2] == ["campaigns", "sinks"] and "0.0.0.0" in sink
    assert str(sms.port) == sink[sink.index("--sms-port") + 1]
    assert sms.path == "/messages"


def test_api_command_names_the_real_app(services: dict[str, dict[str, Any]]) -> None:
    cmd = command(services["api"])
    assert cmd[0] == "uvicorn"
    target = next(part for part in cmd[1:] if ":" in part and not part.startswith("-"))
    assert target == "api.main:app"
    module, attr = target.split(":")
    app = getattr(importlib.import_module(module), attr)
    assert type(app).__name__ == "FastAPI"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--port") + 1] == "8000"


def test_worker_command_runs_worker_py(services: dict[str, dict[str, Any]]) -> None:
    assert command(services["worker"]) == ["python", "worker.py"]
    source = (ROOT / "worker.py").read_text()
    assert 'if __name__ == "__main__":' in source and "def main()" in source


def test_migrate_runs_the_cli_migrate_subcommand(services: dict[str, dict[str, Any]]) -> None:
    assert command(services["migrate"]) == ["campaigns", "migrate"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["campaigns"] == "devstack.cli:main"
    assert build_parser().parse_args(["migrate"]).command == "migrate"


def test_our_images_are_built_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^WORKDIR /app$", dockerfile, re.M), "worker.py must sit in the working directory"
    assert re.search(r"^COPY \. \.$", dockerfile, re.M)
    for name in OUR_SERVICES:
        build = services[name]["build"]
        assert build["context"] == "." and (ROOT / build["dockerfile"]).samefile(ROOT / "Dockerfile")


def test_ports(services: dict[str, dict[str, Any]]) -> None:
    assert (8000, 8000) in published(services["api"])
    assert (7233, 7233) in published(services["temporal"])
    assert (8233, 8080) in published(services["temporal-ui"])
    assert {(1025, 1025), (8025, 8025)} <= published(services["mailpit"])
    assert environment(services["temporal-ui"])["TEMPORAL_ADDRESS"] == "temporal:7233"
    hosts = [host for svc in services.values() for host, _ in published(svc)]
    assert len(hosts) == len(set(hosts)), "two services publish the same host port"


def test_admin_tools_register_every_search_attribute(services: dict[str, dict[str, Any]]) -> None:
    script = " ".join(command(services["temporal-admin-tools"]))
    assert "search-attribute create" in script and "--type Keyword" in script
    for key in SEARCH_ATTRIBUTES:
        assert key.name in script


def test_dependencies_name_existing_services(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for dependency in svc.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["temporal-admin-tools"]["condition"] == "service_completed_successfully"
