"""The README's settings table, generated from `core.settings.Settings` so that it stays true.

`campaigns settings` prints it; `campaigns settings --update-readme` rewrites the block between
the markers in README.md; a test fails when the README and the class disagree.
"""

import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from annotated_types import Ge, Le
from pydantic.fields import FieldInfo

from core.settings import Settings

BEGIN = "<!-- settings-table:begin (generated: campaigns settings --update-readme) -->"
END = "<!-- settings-table:end -->"

# Used where a field has no `description` of its own. A field's own description always wins.
NOTES: dict[str, str] = {
    "database_url": "Postgres URL; unset: the embedded Postgres (pgserver) under `.devstack/pg`",
    "temporal_address": "Temporal frontend `host:port`",
    "temporal_namespace": "Temporal namespace",
    "task_queue": "task queue of the campaign workflows and activities",
    "jwt_secret": "HS256 secret of the bearer tokens; refused at its default in production",
    "jwt_algorithm": "algorithm used with `CAMPAIGNS_JWT_SECRET`",
    "jwt_public_key": "RS256 public key (PEM); when set, tokens are verified with it instead",
    "public_url": "base URL of tracking, click and unsubscribe links",
    "tracking_secret": "signs tracking links; refused at its default in production",
    "webhook_secret": "authenticates provider webhooks; refused at its default in production",
    "smtp_host": "SMTP server",
    "smtp_port": "SMTP port",
    "smtp_username": "SMTP AUTH user (unset: no AUTH)",
    "smtp_password": "SMTP AUTH password",
    "smtp_starttls": "upgrade SMTP connections with STARTTLS",
    "smtp_pool_size": "SMTP connections kept open per worker",
    "email_from": "`From:` of campaign emails",
    "sms_url": "SMS provider endpoint (Twilio-style form POST)",
    "sms_token": "bearer token for the SMS provider",
    "sms_from": "sender number of SMS",
    "batch_size": "recipients per send activity (a large run's pages hold more, up to the large batch size)",
    "large_batch_size": (
        "a large run's pages grow up to this (a quarter of the run per page in flight, at most)"
    ),
    "page_time_budget": (
        "seconds one attempt of a page may send (under the page's 15-minute timeout); then it stops"
        " as a pause would and the rest of the page is sent as a new activity"
    ),
    "shutdown_grace_seconds": (
        "on SIGTERM, how long a worker's running activities get before they are cancelled; a send page"
        " not done 10 s before that stops as a pause would (give the process manager longer)"
    ),
    "send_concurrency": (
        "messages per render job; rendering runs ahead of the slots by two such chunks for email, six for SMS"
    ),
    "sms_in_flight": "SMS requests one worker keeps in flight (one kept-alive connection each)",
    "sms_idempotent": "the SMS provider dedupes on Idempotency-Key: in-flight SMS of a crash are re-posted",
    "sms_quiet_hours_default": "SMS quiet hours of a tenant with no policy, `HH:MM-HH:MM` local; empty: none",
    "snapshot_chunk_size": "rows per step when the audience is snapshotted",
    "batches_per_run": "send batches per workflow run before continue-as-new",
    "max_body_bytes": "largest accepted request body (bigger: 413)",
}


def env_name(field: str) -> str:
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " \\| ".join(type_name(arg) for arg in get_args(annotation))
    if annotation is type(None):
        return "unset"
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: FieldInfo) -> str:
    if field.default is None:
        return "unset"
    if isinstance(field.default, str):
        return f"`{field.default}`" if field.default else '`""`'
    if isinstance(field.default, bool):
        return f"`{str(field.default).lower()}`"
    return f"`{field.default}`"


def bounds(field: FieldInfo) -> str:
    low = next((m.ge for m in field.metadata if isinstance(m, Ge)), None)
    high = next((m.le for m in field.metadata if isinstance(m, Le)), None)
    if low is None and high is None:
        return ""
    return f" ({'' if low is None else low}…{'' if high is None else high})"


def settings_table() -> str:
    lines = ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = field.description or NOTES.get(name, "")
        lines.append(
            f"| `{env_name(name)}` | {type_name(field.annotation)}{bounds(field)} | "
            f"{default_text(field)} | {meaning} |"
        )
    return "\n".join(lines)


def readme_block() -> str:
    return f"{BEGIN}\n{settings_table()}\n{END}"


def current_block(readme: str) -> str | None:
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        return None
    return readme[start : end + len(END)]


def update_readme(path: Path) -> bool:
    """Rewrite the generated block in place; True when the file changed."""
    text = path.read_text()
    block = current_block(text)
    if block is None:
        raise ValueError(f"{path} has no settings-table markers")
    new = text.replace(block, readme_block())
    if new == text:
        return False
    path.write_text(new)
    return True
