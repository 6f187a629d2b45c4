"""`campaigns`: the command line of developers and operators (dev stack, API, worker, migrations,
tokens, demo data, captures, live campaign status).

Each subcommand imports what it needs when it runs, so `campaigns --help` and `campaigns token`
stay fast. argparse rather than Typer: no dependency for a dozen flags, and `build_parser()` is what
the compose test checks the entry points against.
"""

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_API = "http://127.0.0.1:8000"
DEFAULT_TENANT = "tenant_demo"


def cmd_dev(args: argparse.Namespace) -> int:
    from core.settings import Settings
    from devstack.stack import DevConfig, DevPorts, StackError, run_dev

    ports = DevPorts(
        api=args.api_port,
        temporal=args.temporal_port,
        temporal_ui=args.temporal_ui_port,
        smtp=args.smtp_port,
        sms=args.sms_port,
        captures=args.captures_port,
    )
    try:
        return run_dev(DevConfig(settings=Settings(), state_dir=args.state_dir.resolve(), ports=ports))
    except StackError as err:
        print(f"campaigns dev: {err}", file=sys.stderr)
        return 1


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from core import logs
    from core.settings import get_settings

    settings = get_settings()
    logs.configure(settings.log_level, settings.log_format)
    # Our middleware writes the access lines (route templates, ids); uvicorn's would repeat them.
    # The httptools parser with a bound on the request head (api/edge.py).
    uvicorn.run(
        "api.main:app",
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        http="api.edge:HttpToolsWithHeadLimit",
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from worker import main as worker_main

    worker_main()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from core.settings import Settings
    from devstack.status import StatusError, watch

    code = 0
    try:
        asyncio.run(watch(Settings(), args.campaign_id, sys.stdout, once=args.once, interval=args.interval))
    except StatusError as err:
        print(f"campaigns status: {err}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print()
    _exit_past_the_temporal_client(code)
    return code  # pragma: no cover - _exit does not return


def _exit_past_the_temporal_client(code: int) -> None:
    """End a short-lived command that used a Temporal client without interpreter teardown.

    The client's Rust runtime keeps threads that may call into Python while the interpreter
    finalizes, which now and then aborts the process ("PyGILState_Release: thread state must be
    current", temporalio/sdk-python#300) after the work is done. Nothing is left to clean up here:
    flush what was printed and leave.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_migrate(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from core.settings import get_settings
    from db.migrate import upgrade
    from devstack.postgres import EmbeddedPostgres, embedded_pg_dir

    settings = get_settings()
    if settings.database_url:
        upgrade(settings.database_url)
        url = settings.database_url
    else:
        with EmbeddedPostgres(embedded_pg_dir(args.state_dir.resolve())) as url:
            upgrade(url)
    print(f"migrated {make_url(url).render_as_string(hide_password=True)} to head")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from api.auth import issue_token
    from core.settings import Settings

    settings = Settings()
    ttl = settings.jwt_max_age if args.ttl is None else args.ttl
    if not 0 < ttl <= settings.jwt_max_age:
        print(
            f"campaigns token: --ttl must be 1..{settings.jwt_max_age} seconds (CAMPAIGNS_JWT_MAX_AGE): "
            "the API refuses longer-lived tokens",
            file=sys.stderr,
        )
        return 2
    print(issue_token(settings, args.sub, list(args.tenant), ttl=timedelta(seconds=ttl)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from api.auth import issue_token
    from core.settings import Settings
    from devstack.demo import ApiClient, DemoError, create_demo, execute_and_wait

    api = ApiClient(args.api, issue_token(Settings(), "user_demo", [args.tenant]))
    try:
        ids = create_demo(api, args.tenant, run_tag=time.strftime("%Y%m%d%H%M%S"))
        print("\n".join(ids.lines()))
        if args.execute:
            campaign = execute_and_wait(api, ids.campaign_id, timeout=args.timeout)
            print(f"STATUS={campaign['status']}")
            print(f"SENT_COUNT={campaign.get('sentCount')}")
    except DemoError as err:
        print(f"campaigns demo: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_sinks(args: argparse.Namespace) -> int:
    from core.settings import Settings
    from devstack.captures import CaptureConfig, run_captures

    settings = Settings()
    cfg = CaptureConfig(
        host=args.host,
        smtp_port=None if args.no_smtp else (args.smtp_port or settings.smtp_port),
        sms_port=None if args.no_sms else (args.sms_port or urlsplit(settings.sms_url).port or 8025),
        view_port=args.view_port or None,
        sms_token=settings.sms_token,
    )
    asyncio.run(run_captures(cfg))
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from devstack.settings_doc import settings_table, update_readme

    if args.update_readme is None:
        print(settings_table())
        return 0
    changed = update_readme(args.update_readme)
    print(f"{args.update_readme}: {'updated' if changed else 'already up to date'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="campaigns",
        description="Campaign orchestration service: development stack, operations and tools. "
        "Settings come from CAMPAIGNS_* environment variables.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(handler=handler)
        return p

    dev = add(
        "dev",
        cmd_dev,
        "run the whole stack: Temporal dev server + UI, Postgres, migrations, SMTP/SMS captures, "
        "a worker and the API; Ctrl-C stops it all",
    )
    _state_dir(dev)
    dev.add_argument("--api-port", type=int, default=8000)
    dev.add_argument("--temporal-port", type=int, default=7233)
    dev.add_argument("--temporal-ui-port", type=int, default=8233)
    dev.add_argument("--smtp-port", type=int, default=1025)
    dev.add_argument("--sms-port", type=int, default=8025)
    dev.add_argument("--captures-port", type=int, default=8026, help="page listing captured messages")

    api = add("api", cmd_api, "serve the API (uvicorn api.main:app) with the CAMPAIGNS_* settings")
    api.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    api.add_argument("--port", type=int, default=8000, help="port (default: 8000)")

    add(
        "worker",
        cmd_worker,
        "run a worker (python worker.py): the campaign workflows and their activities; "
        "metrics on CAMPAIGNS_WORKER_METRICS_PORT",
    )

    status = add(
        "status",
        cmd_status,
        "live progress of a campaign from its workflow's progress query, until it completes",
    )
    status.add_argument("campaign_id", metavar="CAMPAIGN_ID", help="e.g. campaign_0123456789abcdef")
    status.add_argument("--once", action="store_true", help="print the progress once and exit")
    status.add_argument("--interval", type=float, default=1.0, help="seconds between queries (default: 1)")

    migrate = add(
        "migrate",
        cmd_migrate,
        "apply the database migrations (CAMPAIGNS_DATABASE_URL, else the embedded Postgres)",
    )
    _state_dir(migrate)

    token = add("token", cmd_token, "print a development JWT signed with CAMPAIGNS_JWT_SECRET")
    token.add_argument("--tenant", action="append", required=True, help="tenant to grant (repeatable)")
    token.add_argument("--sub", default="user_dev", help="subject, becomes createdBy (default: user_dev)")
    token.add_argument(
        "--ttl", type=int, help="lifetime in seconds (default and maximum: CAMPAIGNS_JWT_MAX_AGE, 86400)"
    )

    demo = add(
        "demo",
        cmd_demo,
        "create demo customers, a segment, templates and a campaign through the API of a running "
        "stack; prints the ids as KEY=value lines",
    )
    demo.add_argument("--api", default=DEFAULT_API, help=f"API base URL (default: {DEFAULT_API})")
    demo.add_argument("--tenant", default=DEFAULT_TENANT, help=f"tenant (default: {DEFAULT_TENANT})")
    demo.add_argument("--execute", action="store_true", help="also execute it and wait until it finishes")
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait with --execute")

    sinks = add("sinks", cmd_sinks, "run only the SMTP and SMS captures (and the page that lists them)")
    sinks.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    sinks.add_argument("--smtp-port", type=int, help="default: CAMPAIGNS_SMTP_PORT (1025)")
    sinks.add_argument("--sms-port", type=int, help="default: the port of CAMPAIGNS_SMS_URL (8025)")
    sinks.add_argument("--view-port", type=int, default=8026, help="page of captures; 0: none")
    sinks.add_argument("--no-smtp", action="store_true", help="no SMTP capture (e.g. next to mailpit)")
    sinks.add_argument("--no-sms", action="store_true", help="no SMS capture")

    settings = add("settings", cmd_settings, "print the CAMPAIGNS_* settings table (Markdown)")
    settings.add_argument(
        "--update-readme",
        type=Path,
        nargs="?",
        const=Path("README.md"),
        metavar="PATH",
        help="rewrite the generated table in PATH (default: README.md)",
    )
    return parser


def _state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".devstack"),
        help="where the Temporal db file, the embedded Postgres and logs live (default: .devstack)",
    )


# Commands that only make sense on a developer's machine: they run as `development` unless the
# caller chose an environment, so the dev stack and the README's walk-through work on the published
# development secrets. `api`, `worker` and `migrate` serve deployments and get no such default.
DEVELOPMENT_COMMANDS = frozenset({"dev", "token", "demo", "sinks", "status", "settings"})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in DEVELOPMENT_COMMANDS:
        os.environ.setdefault("CAMPAIGNS_ENVIRONMENT", "development")
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
