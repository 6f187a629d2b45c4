"""A linear HTML tokenizer: the tags and text of a document, with their positions.

Both the link rewriting of outgoing emails and the text part derived from html read html that a
tenant wrote (and a recipient's fields filled in). CPython's `html.parser` and a regular
expression over "a tag with quoted attributes" both scan the rest of the document again at every
`<` they cannot close, so a run of unclosed tags (`<a "<a "<a "...`, `<a <a <a ...`) costs time
quadratic in its length: tens of seconds for 100 KB, a stalled API or worker for everybody. This
scanner follows the HTML tokenizer instead, and never looks back:

- a tag starts at `<` followed by an ASCII letter (`</` and a letter for an end tag) and ends at the
  first `>` that is not inside a quoted attribute value; a value is quoted only when its quote
  comes first after `=` (a `"` anywhere else is part of an attribute name, as browsers read it);
- comments (`<!-- ... -->`, also closed by `--!>`), `<!...>` declarations, `<?...>` and `</` not
  followed by a letter are skipped up to their end;
- the content of `script`, `style`, `xmp`, `iframe`, `noembed` and `noframes` (raw text) and of
  `title` and `textarea` (text with character references) is text up to its end tag; after
  `plaintext` everything is text;
- a tag, comment or declaration that the document never closes swallows the rest of it, as in a
  browser: nothing after it is a tag (`open_from` tells where it started).

Each step is one `str.find` or one anchored regular expression match that moves forward, its
repetitions possessive (they never give back what they read), so every character is examined a
bounded number of times whatever the input.
"""

import re
from collections.abc import Generator, Iterator
from functools import lru_cache
from typing import NamedTuple

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# Only ASCII letters are folded, as browsers do: `str.lower` would turn a Kelvin sign into "k".


def _attribute(group: str) -> str:
    """One attribute, as the HTML tokenizer reads it (`group` opens its name's and value's groups).

    Before it, white space and a '/' that does not close the tag; then a name (which may start
    with '=' and may hold quotes); then '=' and a value, quoted only when the quote comes first.
    After '=' a value must follow, or the tag must end: when a quote opens and never closes, the
    pattern does not match (the tag is unclosed) rather than read the quote as a name. Every
    repetition is possessive: no character is ever read twice.
    """
    return rf"""
        (?:[\t\n\f\r ]|/(?!>))*+
        {group}[^\t\n\f\r />][^\t\n\f\r />=]*+)
        (?:[\t\n\f\r ]*+=[\t\n\f\r ]*+{group}"[^"]*+"|'[^']*+'|[^\t\n\f\r >"'][^\t\n\f\r >]*+|(?=>))
         |(?![\t\n\f\r ]*+=))
    """


_ATTRIBUTES = re.compile(_attribute("("), re.VERBOSE)
_NAME_REST = r"[^\t\n\f\r />]*+"
# A tag's attributes and what may follow them before its '>' (or '/>').
_ATTRIBUTES_TO_END = rf"(?:{_attribute('(?:')})*+(?:[\t\n\f\r ]|/(?!>))*+"
# A whole tag after its '<' or '</': it matches exactly when the tokenizer would close the tag.
_TAG = re.compile(rf"([A-Za-z]{_NAME_REST}){_ATTRIBUTES_TO_END}(/?)>", re.VERBOSE)
# A '<' that may start markup: a tag, an end tag, a comment or a declaration.
_MARKUP = re.compile(r"<[A-Za-z!?/]")
_COMMENT_END = re.compile(r"--!?>")
_RAW_TEXT = frozenset({"script", "style", "xmp", "iframe", "noembed", "noframes"})
_ESCAPABLE_RAW_TEXT = frozenset({"title", "textarea"})
_END_TAGS: dict[str, re.Pattern[str]] = {
    name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE) for name in _RAW_TEXT | _ESCAPABLE_RAW_TEXT
}


@lru_cache(maxsize=8)
def _ordinary_run(starts: frozenset[str], ends: frozenset[str]) -> re.Pattern[str]:
    """Text, complete tags and comments that need no attention when only the start tags named in
    `starts` and the end tags named in `ends` matter.

    One match skips them at the regular expression engine's speed; it stops at the first
    construct that needs a closer look: a wanted tag, an element whose content is not markup, a
    tag or comment that is never closed.
    """
    special = "|".join(sorted(_RAW_TEXT | _ESCAPABLE_RAW_TEXT | {"plaintext"} | starts))
    names = "|".join(sorted(ends)) or "(?!)"
    end = r"[\t\n\f\r />]"
    return re.compile(
        rf"""(?:
            [^<]++
          | <(?![A-Za-z!?/])
          | <(?!(?i:{special}){end})[A-Za-z]{_NAME_REST}{_ATTRIBUTES_TO_END}/?>
          | </(?!(?i:{names}){end})[A-Za-z]{_NAME_REST}{_ATTRIBUTES_TO_END}/?>
          | <!--(?:-?>|(?:[^-]++|-(?!-!?>))*+--!?>)
          | <!(?!--)[^>]*+>
          | <\?[^>]*+>
          | </(?![A-Za-z>])[^>]*+>
        )*+""",
        re.VERBOSE,
    )


def _lower(name: str) -> str:
    return name.lower() if name.isascii() else name.translate(_ASCII_LOWER)


class Attribute(NamedTuple):
    """One attribute as written: `value` is None without `=`; `start:end` spans the value, quotes
    included (an empty span at the end of the name when there is no value)."""

    name: str
    value: str | None
    start: int
    end: int


class StartTag(NamedTuple):
    """A start tag at `start:end`; its attributes are read on demand (`HtmlScanner.attribute`)."""

    name: str
    self_closing: bool
    start: int
    end: int
    name_end: int


class EndTag(NamedTuple):
    name: str
    start: int
    end: int


class Text(NamedTuple):
    """`start:end` of text; `references` is False for raw text, whose `&...;` are no references."""

    start: int
    end: int
    references: bool = True


Token = StartTag | EndTag | Text


class HtmlScanner:
    """Tokens of one document, in order; comments and declarations are skipped.

    With `start_tags`, only the start tags of those names and the end tags named in `end_tags`
    are yielded (no text), and everything else is skipped in bulk: far faster on documents made
    mostly of other tags.

    After `tokens()` is exhausted, `open_from` is where the construct that the document never
    closes begins (a tag, a comment, a raw text element...), or None when the document ends in
    plain text: content appended at `open_from` is read as markup, content appended at the end of
    such a document is not.
    """

    def __init__(
        self, html: str, start_tags: frozenset[str] | None = None, end_tags: frozenset[str] = frozenset()
    ) -> None:
        self.html = html
        self.start_tags = start_tags
        self.end_tags = end_tags
        self.open_from: int | None = None

    def tokens(self) -> Iterator[Token]:
        html = self.html
        size = len(html)
        wanted = self.start_tags
        ordinary = _ordinary_run(wanted, self.end_tags) if wanted is not None else None
        pos = 0  # where the current text run started
        at = 0  # where to look for the next '<'
        while True:
            if ordinary is not None:
                run = ordinary.match(html, at)
                assert run is not None  # it can match nothing
                at = run.end()
            found = _MARKUP.search(html, at)  # any other '<' is text
            if found is None:
                break
            lt = found.start()
            if html[lt + 1] == "/" and lt + 2 == size:
                break  # a '</' that ends the document is text
            if lt > pos and wanted is None:
                yield Text(pos, lt)
            skipped = yield from self._markup(lt)
            if skipped < 0:
                return
            pos = at = skipped
        if size > pos and wanted is None:
            yield Text(pos, size)

    def _markup(self, lt: int) -> Generator[Token, None, int]:
        """The tokens of the markup at `lt` that are wanted; returns where the text after it
        starts, or -1 when the scan ends there (the document ends inside it)."""
        wanted = self.start_tags
        following = self.html[lt + 1]
        if following == "/":
            end_tag, skipped = self._end_tag(lt)
            if end_tag is not None and (wanted is None or end_tag.name in self.end_tags):
                yield end_tag
            return skipped
        if following == "!" or following == "?":
            return self._comment_end(lt)
        tag = self._start_tag(lt)
        if tag is None:
            return -1
        if wanted is None or tag.name in wanted:
            yield tag
        if tag.name not in _END_TAGS and tag.name != "plaintext":
            return tag.end
        skipped = self._raw_text_end(tag)
        if skipped > tag.end and wanted is None:
            yield Text(tag.end, skipped, references=tag.name in _ESCAPABLE_RAW_TEXT)
        return -1 if skipped == len(self.html) else skipped

    def _unclosed(self, start: int) -> int:
        self.open_from = start
        return -1

    def _start_tag(self, lt: int) -> StartTag | None:
        match = _TAG.match(self.html, lt + 1)
        if match is None:
            self._unclosed(lt)
            return None
        return StartTag(_lower(match.group(1)), bool(match.group(2)), lt, match.end(), match.end(1))

    def _end_tag(self, lt: int) -> tuple[EndTag | None, int]:
        """`</name ...>` (its attributes are read, then dropped), `</>` (nothing) or a bogus comment."""
        html = self.html
        if html.startswith(">", lt + 2):
            return None, lt + 3
        if not html[lt + 2].isascii() or not html[lt + 2].isalpha():
            return None, self._comment_end(lt)
        match = _TAG.match(html, lt + 2)
        if match is None:
            return None, self._unclosed(lt)
        return EndTag(_lower(match.group(1)), lt, match.end()), match.end()

    def attribute(self, tag: StartTag, name: str) -> Attribute | None:
        """The first attribute of the tag with that name (browsers ignore the repeats)."""
        for match in _ATTRIBUTES.finditer(self.html, tag.name_end, tag.end):
            if _lower(match.group(1)) == name:
                value = match.group(2)
                if value is None:
                    return Attribute(name, None, match.end(1), match.end(1))
                start, end = match.span(2)
                if value[:1] in ("'", '"'):
                    value = value[1:-1]
                return Attribute(name, value, start, end)
        return None

    def _comment_end(self, lt: int) -> int:
        """Where the comment or declaration at `lt` ends (`<!--`, `<!...>`, `<?...>`, `</...>`)."""
        html = self.html
        if html.startswith("<!--", lt):
            body = lt + 4
            if html.startswith(">", body):  # `<!-->` and `<!--->` are (empty) comments
                return body + 1
            if html.startswith("->", body):
                return body + 2
            close = _COMMENT_END.search(html, body)
            return close.end() if close is not None else self._unclosed(lt)
        close_at = html.find(">", lt + 2)
        return close_at + 1 if close_at >= 0 else self._unclosed(lt)

    def _raw_text_end(self, tag: StartTag) -> int:
        """Where the text content of a raw text element ends: its end tag, or the document's end."""
        pattern = _END_TAGS.get(tag.name)
        close = pattern.search(self.html, tag.end) if pattern is not None else None
        if close is None:
            self.open_from = tag.start
            return len(self.html)
        return close.start()
