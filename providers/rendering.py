"""Personalisation in a Jinja2 sandbox: a template sees only the recipient's own fields.

Templates are compiled once per (template, version) and cached, because a page renders the same
template hundreds of times.
"""

from functools import lru_cache
from typing import Any

from jinja2 import TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

_TEXT_ENV = ImmutableSandboxedEnvironment(autoescape=False, undefined=Undefined)
_HTML_ENV = ImmutableSandboxedEnvironment(autoescape=True, undefined=Undefined)
MAX_TEMPLATE_CHARS = 500_000


class TemplateSyntaxProblem(ValueError):
    pass


def recipient_context(customer: dict[str, Any]) -> dict[str, Any]:
    """The whole namespace a template can read: the recipient, nothing of the server."""
    return {
        "firstName": customer.get("first_name") or "",
        "lastName": customer.get("last_name") or "",
        "email": customer.get("email") or "",
        "phone": customer.get("phone") or "",
        "clubId": customer.get("club_id") or "",
        "externalId": customer.get("external_id") or "",
        "attributes": dict(customer.get("attributes") or {}),
    }


@lru_cache(maxsize=512)
def _compiled(source: str, html: bool) -> Any:
    env = _HTML_ENV if html else _TEXT_ENV
    return env.from_string(source)


def check_syntax(source: str, *, html: bool = False) -> None:
    """Raise TemplateSyntaxProblem for a template that would not render."""
    try:
        _compiled(source, html)
    except TemplateError as err:
        raise TemplateSyntaxProblem(str(err)) from err


def render(source: str | None, context: dict[str, Any], *, html: bool = False) -> str:
    if not source:
        return ""
    try:
        return str(_compiled(source, html).render(context))
    except TemplateError as err:
        # A runtime error (e.g. an unsafe attribute access) must not stop a whole send.
        raise TemplateSyntaxProblem(str(err)) from err
