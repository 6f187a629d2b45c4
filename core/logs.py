"""Structured logs: one JSON object per line, with the campaign's ids, and no personal data.

Why a context variable: a log line deep inside a send page or a route does not know which campaign
it concerns, but the code that started the work does. The worker's interceptor (`core.observe`)
binds campaignId/tenantId/workflowId/runId for each activity and workflow task, the API's middleware
binds them per request, and every formatter here reads them. Temporal's own loggers put the
workflow and activity ids on the record (`temporal_workflow` / `temporal_activity`); those are
read too.

Masking: email addresses, E.164 phone numbers, bearer tokens and URL passwords are masked in every
message, exception text and extra field, whatever the caller wrote.
"""

import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from core.constants import campaign_workflow_id

# The ids a line may carry, in the order they are printed.
CONTEXT_KEYS = ("campaignId", "tenantId", "workflowId", "runId")

_context: ContextVar[dict[str, Any] | None] = ContextVar("campaigns_log_context", default=None)

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+")
_EMAIL = re.compile(r"(?P<first>[A-Za-z0-9])[A-Za-z0-9._%+-]*@(?P<domain>[A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# E.164 (the contract's phone format): '+' and 7 to 15 digits. Dates and durations have no '+'.
_PHONE = re.compile(r"\+\d{5,13}(?P<tail>\d{2})\b")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
# Record attributes that are not fields: Temporal's info (read by record_context), uvicorn's ANSI copy.
_NOT_FIELDS = {"temporal_workflow", "temporal_activity", "workflow_info", "activity_info", "color_message"}


def mask(text: str) -> str:
    """The text with personal data and secrets replaced; cheap when there is nothing to mask."""
    if "://" in text:
        text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(r"\1 ***", text)
    if "eyJ" in text:
        text = _JWT.sub("***", text)
    if "@" in text:
        text = _EMAIL.sub(r"\g<first>***@\g<domain>", text)
    if "+" in text:
        text = _PHONE.sub(r"+***\g<tail>", text)
    return text


def current() -> dict[str, Any]:
    """The ids bound to the running task (empty outside any campaign)."""
    return dict(_context.get() or {})


@contextmanager
def bound(**ids: Any) -> Iterator[dict[str, Any]]:
    """Bind ids (None values are dropped) on top of the current ones for the enclosed code.

    Yields the bound dict: code that learns an id later (a route after routing) may add it.
    """
    merged = {**(_context.get() or {}), **{k: v for k, v in ids.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield merged
    finally:
        try:
            _context.reset(token)
        except ValueError:
            # Closed from another context (Temporal closes an evicted workflow's coroutine
            # elsewhere): the context that held the ids is being discarded anyway.
            pass


def bound_dict() -> dict[str, Any] | None:
    """The dict of the innermost `bound()`, to add ids learnt later; None outside any."""
    return _context.get()


def campaign_ids(campaign_id: str | None, tenant_id: str | None = None) -> dict[str, str]:
    """campaignId/tenantId plus the workflow id they imply (API lines know no run id)."""
    ids: dict[str, str] = {}
    if campaign_id:
        ids["campaignId"] = campaign_id
        ids["workflowId"] = campaign_workflow_id(campaign_id)
    if tenant_id:
        ids["tenantId"] = tenant_id
    return ids


def campaign_of(workflow_id: str | None) -> str | None:
    """`campaign-<id>` (or `campaign-<id>-resend`) -> `<id>`; None for other workflows."""
    if not workflow_id or not workflow_id.startswith("campaign-campaign_"):
        return None
    return workflow_id.removeprefix("campaign-").split("-", 1)[0]


def record_context(record: logging.LogRecord) -> dict[str, Any]:
    """The ids of a record: bound ones, then what Temporal's loggers put on it."""
    ids = current()
    temporal: Mapping[str, Any] | None = getattr(record, "temporal_workflow", None) or getattr(
        record, "temporal_activity", None
    )
    if temporal:
        ids.setdefault("workflowId", temporal.get("workflow_id"))
        ids.setdefault("runId", temporal.get("run_id") or temporal.get("workflow_run_id"))
    if "campaignId" not in ids:
        campaign = campaign_of(ids.get("workflowId"))
        if campaign:
            ids["campaignId"] = campaign
    return {k: v for k, v in ids.items() if v is not None}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v
        for k, v in vars(record).items()
        if k not in _STANDARD and k not in _NOT_FIELDS and not k.startswith("_")
    }


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    return mask(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the campaign ids, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask(record.getMessage()),
        }
        line.update(record_context(record))
        for key, value in _extras(record).items():
            line.setdefault(key, _masked(value))
        if record.exc_info:
            line["exc"] = mask(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Plain lines for people at a terminal; the same masking and ids, as `key=value`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = mask(super().format(record))
        ids = record_context(record)
        fields = {k: ids[k] for k in CONTEXT_KEYS if k in ids}
        fields.update({k: _masked(v) for k, v in _extras(record).items()})
        if fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return text


def handler(fmt: str = "json", stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler with our formatter (tests attach one to capture a real run)."""
    h = logging.StreamHandler(stream or sys.stderr)
    h.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    return h


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Route every logger (ours, uvicorn's, Temporal's) through one handler on the root logger.

    uvicorn's access log is switched off: the API's middleware writes one line per request with
    the route template instead of the raw path (raw paths carry tracking tokens).
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(fmt))
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    if fmt == "json":
        # The ids are fields of the JSON line already; Temporal would repeat them in the text.
        import temporalio.activity
        import temporalio.workflow

        temporalio.workflow.logger.workflow_info_on_message = False
        temporalio.activity.logger.activity_info_on_message = False
