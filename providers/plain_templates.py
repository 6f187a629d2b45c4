"""Templates that only put the recipient's fields into literal text, rendered without a render process.

A template is tenant code, so it renders in a render process under time and memory limits
(providers.render_pool). The round trip there (the recipients' fields pickled out, each answer
pickled back, two processes woken) cost about 0.045 ms of CPU per SMS in the running system, a
seventh of an SMS's whole cost (docs/performance-log.md). Most templates are literal text with
`{{ firstName }}` or `{{ attributes.tier }}` in it. Nothing in such a template can loop, call or
build a value: its render is the join of its literal pieces and the recipient's values, in time
and memory linear in what it writes. Those render here, in the calling process.

A source is plain when:
- it has at most MAX_PLAIN_CHARS characters;
- it has no `{%` and no `{#` (no tags, no comments);
- every `{{` opens `{{ name }}`, where `name` is one of the recipient's text fields (`firstName`,
  `lastName`, `email`, `phone`, `clubId`, `externalId`) or `attributes.<key>` (ASCII letters,
  digits and `_`, not starting with `_`), with only spaces, tabs or line breaks around it: no
  filter, operator, subscript, call or whitespace control (`{{-`).
Anything else goes to the render processes, as before.

The output is Jinja's, character for character: literal text has its line breaks made `\\n` and
loses one final line break (Jinja's lexer does both), a value is written with `str()` (escaped as
HTML in an html part), a missing attribute as empty text. One recipient's value that this cannot
write the way Jinja would (`NotPlain`: an attribute that is a list or an object, a key that is also
a dict method the recipient has no attribute for, a text over MAX_PLAIN_OUTPUT) sends that
recipient to the render processes. tests/test_plain_templates.py compares both renders over
generated templates and recipients.
"""

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar, cast

from markupsafe import escape

from providers.email_content import EmailParts, render_parts
from providers.rendering import RECIPIENT_FIELDS

# A plain template longer than this renders in a render process all the same: the fast path is
# for the common short template, and it reads the source (and an email's links) in the caller.
MAX_PLAIN_CHARS = 20_000
# A render that would write more than this (long attribute values) goes to a render process: a
# chunk of messages renders here without a pause, so each message's share stays small (a chunk is
# at most 256 messages, CAMPAIGNS_SEND_CONCURRENCY).
MAX_PLAIN_OUTPUT = 50_000
_TEXT_FIELDS = tuple(name for name in RECIPIENT_FIELDS if name != "attributes")
_SPACE = "[ \t\n]*"  # line breaks are `\n` by the time the source is scanned
_NAME = rf"(?:({'|'.join(_TEXT_FIELDS)})|attributes\.([A-Za-z][A-Za-z0-9_]*))"
_FIELD = re.compile(r"\{\{" + _SPACE + _NAME + _SPACE + r"\}\}")
_OPENS = re.compile(r"(?=\{\{)")  # every place a `{{` starts, overlapping ones too
_NEWLINE = re.compile(r"(\r\n|\r|\n)")
_PLAIN_VALUES = (str, int, float, bool, type(None))
_R = TypeVar("_R")


class NotPlain(Exception):
    """This recipient's render must go to a render process."""


@dataclass(frozen=True)
class PlainTemplate:
    """Literal pieces around the fields: pieces[0], field 0, pieces[1], ..., pieces[-1]."""

    pieces: tuple[str, ...]
    fields: tuple[tuple[str, str | None], ...]  # (a text field, None) or ("attributes", key)


def _lexed(source: str) -> str:
    """The source as Jinja's lexer reads it: line breaks made `\\n`, one final line break dropped."""
    lines = _NEWLINE.split(source)[::2]
    if lines[-1] == "":
        del lines[-1]
    return "\n".join(lines)


@lru_cache(maxsize=256)
def plain_template(source: str | None) -> PlainTemplate | None:
    """The source as a plain template, or None when it is not one (see the module's docstring)."""
    if source is None or len(source) > MAX_PLAIN_CHARS:
        return None
    text = _lexed(source)
    if "{%" in text or "{#" in text:
        return None
    matches = list(_FIELD.finditer(text))
    if [m.start() for m in matches] != [m.start() for m in _OPENS.finditer(text)]:
        return None  # a `{{` that is not one of ours, or one inside another (`{{{ x }}`)
    pieces, fields, copied = [], [], 0
    for m in matches:
        pieces.append(text[copied : m.start()])
        fields.append((m[1], None) if m[1] else ("attributes", m[2]))
        copied = m.end()
    pieces.append(text[copied:])
    return PlainTemplate(tuple(pieces), tuple(fields))


def _value(context: Mapping[str, Any], name: str, key: str | None) -> Any:
    if key is None:
        return context.get(name, "")
    attributes = context.get("attributes")
    if type(attributes) is not dict:
        raise NotPlain(name)
    if key in attributes:
        return attributes[key]
    if hasattr(dict, key):  # Jinja's sandbox would reach for the method (or refuse it)
        raise NotPlain(key)
    return ""  # a missing attribute renders as empty text


def render_plain(template: PlainTemplate, context: Mapping[str, Any], *, html: bool = False) -> str:
    """One recipient's render, exactly as Jinja's; NotPlain when only a render process can say."""
    out = [template.pieces[0]]
    size = len(template.pieces[0])
    for (name, key), piece in zip(template.fields, template.pieces[1:], strict=True):
        value = _value(context, name, key)
        if type(value) not in _PLAIN_VALUES:
            raise NotPlain(name)
        written = str(escape(value)) if html else str(value)
        size += len(written) + len(piece)
        if size > MAX_PLAIN_OUTPUT:
            raise NotPlain("too long")
        out.append(written)
        out.append(piece)
    return "".join(out)


def plain_renderer(*sources: str | None) -> "PlainRenderer | None":
    """A renderer for these sources when each is plain (or absent), else None."""
    templates = {}
    for source in sources:
        if source:
            template = plain_template(source)
            if template is None:
                return None
            templates[source] = template
    return PlainRenderer(templates)


@dataclass(frozen=True)
class PlainRenderer:
    """`render` in providers.rendering's signature, for sources already known to be plain."""

    templates: dict[str, PlainTemplate]

    def __call__(self, source: str | None, context: Mapping[str, Any], *, html: bool = False) -> str:
        if not source:
            return ""
        return render_plain(self.templates[source], context, html=html)


def plain_sms(body: str | None, contexts: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """Each recipient's SMS body when the template is plain; None where a render process must
    render it (every recipient, for a template that is not plain)."""
    renderer = plain_renderer(body) if body else None
    if renderer is None:
        return [None] * len(contexts)
    return _each(contexts, lambda context: renderer(body, context))


def plain_emails(
    subject: str | None, html: str | None, text: str | None, contexts: Sequence[Mapping[str, Any]]
) -> list[EmailParts | None]:
    """Each recipient's email parts when all three sources are plain (or absent); None where a
    render process must render them."""
    renderer = plain_renderer(subject, html, text)
    if renderer is None:
        return [None] * len(contexts)
    # (a part is at most MAX_PLAIN_OUTPUT, far below the render processes' MAX_EMAIL_PART_CHARS)
    return _each(
        contexts, lambda context: render_parts(subject, html, text, dict(context), render_with=renderer)
    )


def _each(
    contexts: Sequence[Mapping[str, Any]], render: Callable[[Mapping[str, Any]], _R]
) -> list[_R | None]:
    """`render` of each context; None for a recipient only a render process can render."""
    out: list[_R | None] = []
    for context in contexts:
        try:
            out.append(render(context))
        except NotPlain:
            out.append(None)
    return out


async def filled(
    done: Sequence[_R | None],
    contexts: Sequence[Mapping[str, Any]],
    render: Callable[[list[Any]], Awaitable[list[Any]]],
) -> list[_R]:
    """`done` with its gaps (None) rendered by `render` (the render processes), in one job."""
    rest = [i for i, result in enumerate(done) if result is None]
    results = list(done)
    if rest:
        for i, result in zip(rest, await render([contexts[i] for i in rest]), strict=True):
            results[i] = result
    return cast(list[_R], results)
