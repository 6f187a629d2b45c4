"""The links a template's author wrote: the only URLs an email may turn into click-tracking links.

A click-tracking link is a signed redirect: whoever controls its target URL gets a link on the
service's own domain that sends a browser anywhere. Links are rewritten after rendering, so the
rendered email also holds whatever the recipient's fields put there (a `firstName` or an attribute
that is a URL, imported by anybody who can fill a sign-up form). Only URLs written in the template
itself are tracked; every other URL stays exactly as rendered, a plain link the service never
signs.

The allowed URLs are read from the template's static text (the text between `{{ }}` and `{% %}`,
as Jinja parses it with the environment that renders it), html character references decoded:

- a URL whose static text ends where the text does (`https://x.example/book?id={{ externalId }}`)
  may be completed by the rendering, but only when that static part already reaches the query or
  the fragment (holds `?` or `#` after the host): a recipient's value can fill query values, never
  choose the host or the path. Such a URL is tracked when the rendered one starts with it;
- any other URL is tracked only when the rendered URL is exactly it (a trailing `.`, `)` ... after
  a URL in plain text is punctuation, not part of it, as the text part's rewriting reads it).

A URL built only by expressions (`{{ attributes.link }}`, `https://{{ host }}/`) is never tracked.
"""

import html
import re
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache

from jinja2 import nodes

from providers.rendering import _HTML_ENV, _TEXT_ENV, LONG_TEMPLATE_CHARS, TemplateSyntaxProblem

# What the text part's rewriting calls a URL (providers.email_content), and the punctuation it
# leaves outside one.
URL_IN_TEXT = re.compile(r"""https?://[^\s<>"']+""", re.IGNORECASE)
TRAILING_PUNCTUATION = ".,;:!?)]}"
_SCHEME_END = "://"


@dataclass(frozen=True)
class TemplateLinks:
    """URLs that may be tracked: `exact` ones, and ones starting with one of `prefixes`.

    `prefixes` is sorted and no element starts with another (a longer one adds nothing), so the
    only candidate for a URL is the greatest prefix not above it: one lookup whatever their number.
    Frozen and made of plain values: it travels with the rendered parts between processes.
    """

    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = field(default=())

    def allows(self, url: str) -> bool:
        if url in self.exact:
            return True
        at = bisect_right(self.prefixes, url)
        return at > 0 and url.startswith(self.prefixes[at - 1])


def _minimal_prefixes(prefixes: set[str]) -> tuple[str, ...]:
    kept: list[str] = []
    for prefix in sorted(prefixes):
        if not kept or not prefix.startswith(kept[-1]):
            kept.append(prefix)
    return tuple(kept)


def _reaches_query(url: str) -> bool:
    """True when the URL's text goes past its host and path into the query or the fragment."""
    after_scheme = url[url.find(_SCHEME_END) + len(_SCHEME_END) :]
    return "?" in after_scheme or "#" in after_scheme


def _static_texts(tree: nodes.Template) -> list[str]:
    """The static text of a parsed template (walked without recursion: nesting can be deep)."""
    texts: list[str] = []
    todo: deque[nodes.Node] = deque([tree])
    while todo:
        node = todo.popleft()
        if isinstance(node, nodes.TemplateData):
            texts.append(node.data)
        else:
            todo.extend(node.iter_child_nodes())
    return texts


def _collect(source: str, html_source: bool, exact: set[str], prefixes: set[str]) -> None:
    env = _HTML_ENV if html_source else _TEXT_ENV
    try:
        tree = env.parse(source)
    except Exception as err:  # rendering compiled it first: this only guards against the unexpected
        raise TemplateSyntaxProblem(f"the template cannot be read: {type(err).__name__}") from err
    for data in _static_texts(tree):
        for match in URL_IN_TEXT.finditer(data):
            written = match.group()
            # An html part holds `&amp;` where the link means `&`; a text part derived from html
            # holds the html too; a plain text part means what it says: both readings are the author's.
            for url in {written, html.unescape(written)}:
                exact.add(url)
                exact.add(url.rstrip(TRAILING_PUNCTUATION))
                if match.end() == len(data) and _reaches_query(url):
                    prefixes.add(url)


def _template_links(html_source: str | None, text_source: str | None) -> TemplateLinks:
    exact: set[str] = set()
    prefixes: set[str] = set()
    if html_source:
        _collect(html_source, True, exact, prefixes)
    if text_source:
        _collect(text_source, False, exact, prefixes)
    return TemplateLinks(frozenset(exact), _minimal_prefixes(prefixes))


# Read once per template, like its compiled code (providers.rendering): long sources apart.
_short = lru_cache(maxsize=128)(_template_links)
_long = lru_cache(maxsize=16)(_template_links)


def template_links(html_source: str | None, text_source: str | None) -> TemplateLinks:
    """The links of an email template (its html and text sources), read once per source."""
    if len(html_source or "") + len(text_source or "") <= LONG_TEMPLATE_CHARS:
        return _short(html_source, text_source)
    return _long(html_source, text_source)
