"""Plain text from HTML: the text part of an EMAIL template that has only `html`.

What a reader of the HTML sees, as text: block elements (paragraphs, headings, list items, table
rows, `<br>`) end lines, paragraphs and headings are separated by a blank line, list items start
with "- ", a link keeps its text followed by its URL in parentheses (so the text part has the same
links, and tracking rewrites them the same way), and `<script>`, `<style>`, `<head>` and
`<title>` are dropped. Runs of white space collapse to one space, as a browser shows them.

The html is read with `providers.html_scan` (time linear in its length, however broken it is), the
way a browser reads it: a tag the document never closes swallows the rest (nothing after it is
shown), the content of `<script>`, `<style>`, `<title>` and `<textarea>` is text, not tags, and
links do not nest (a new `<a>` ends the open one), so each piece of text is the label of at most
one link and is looked at once.
"""

import re
from html import unescape

from providers.html_scan import EndTag, HtmlScanner, StartTag

_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "div", "dl", "dt", "dd", "fieldset", "figure",
        "footer", "form", "header", "li", "main", "nav", "ol", "pre", "section", "table", "tr", "ul",
    }
)  # fmt: skip
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "hr"})
_HIDDEN = frozenset({"script", "style", "head", "title", "template"})
_SPACES = re.compile(r"[ \t\r\n\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_LINK_URL = re.compile(r"(?i)^(https?:|mailto:|tel:)")


class _TextWriter:
    """The text of a document, written token by token (see the module docstring for the rules)."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.pending = 0  # line breaks owed before the next text (the largest asked for wins)
        self.hidden = 0
        self.link: tuple[str | None, int] | None = None  # the open link: (href, where its text starts)

    def _break(self, lines: int) -> None:
        self.pending = max(self.pending, lines)

    def _emit(self, text: str) -> None:
        if self.pending:
            if self.out:
                self.out.append("\n" * self.pending)
            self.pending = 0
        self.out.append(text)

    def start_tag(self, tag: str, href: str | None) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag == "br":
            self._break(1)
        elif tag in _PARAGRAPH:
            self._break(2)
        elif tag in _BLOCK:
            self._break(1)
            if tag == "li":
                self._emit("- ")
        elif tag in ("td", "th"):
            self._emit(" ")
        if tag == "a":
            self._end_link()
            self.link = (href, len(self.out))

    def self_closing_tag(self, tag: str, href: str | None) -> None:
        self.start_tag(tag, href)
        if tag in _HIDDEN:
            self.hidden -= 1

    def end_tag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(self.hidden - 1, 0)
        elif tag in _PARAGRAPH:
            self._break(2)
        elif tag in _BLOCK:
            self._break(1)
        elif tag == "a":
            self._end_link()

    def _end_link(self) -> None:
        """After a link's text, its URL (unless the text already is the URL)."""
        if self.link is None:
            return
        href, start = self.link
        self.link = None
        label = _SPACES.sub(" ", "".join(self.out[start:])).strip()
        url = (href or "").strip()
        if url and _LINK_URL.match(url) and url != label and url.removeprefix("mailto:") != label:
            self._emit(f" ({url})" if label else url)

    def data(self, data: str) -> None:
        text = _SPACES.sub(" ", data)  # a newline in HTML source is a space
        if not self.hidden and (text.strip() or not self.pending):
            self._emit(text)


def html_to_text(html: str) -> str:
    writer = _TextWriter()
    scanner = HtmlScanner(html)
    for token in scanner.tokens():
        if isinstance(token, StartTag):
            href = scanner.attribute(token, "href") if token.name == "a" else None
            value = unescape(href.value) if href is not None and href.value is not None else None
            if token.self_closing:
                writer.self_closing_tag(token.name, value)
            else:
                writer.start_tag(token.name, value)
        elif isinstance(token, EndTag):
            writer.end_tag(token.name)
        else:
            chunk = html[token.start : token.end]
            writer.data(unescape(chunk) if token.references else chunk)
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(writer.out).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")
