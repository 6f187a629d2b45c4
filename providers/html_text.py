"""Plain text from HTML: the text part of an EMAIL template that has only `html`.

What a reader of the HTML sees, as text: block elements (paragraphs, headings, list items, table
rows, `<br>`) end lines, paragraphs and headings are separated by a blank line, list items start
with "- ", a link keeps its text followed by its URL in parentheses (so the text part has the same
links, and tracking rewrites them the same way), and `<script>`, `<style>`, `<head>` and
`<title>` are dropped. Runs of white space collapse to one space, as a browser shows them.
"""

import re
from html.parser import HTMLParser

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


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.pending = 0  # line breaks owed before the next text (the largest asked for wins)
        self.hidden = 0
        self.links: list[tuple[str | None, int]] = []  # (href, where its text starts in `out`)

    def _break(self, lines: int) -> None:
        self.pending = max(self.pending, lines)

    def _emit(self, text: str) -> None:
        if self.pending:
            if self.out:
                self.out.append("\n" * self.pending)
            self.pending = 0
        self.out.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
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
            self.links.append((dict(attrs).get("href"), len(self.out)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in _HIDDEN:
            self.hidden -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(self.hidden - 1, 0)
        elif tag in _PARAGRAPH:
            self._break(2)
        elif tag in _BLOCK:
            self._break(1)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            label = _SPACES.sub(" ", "".join(self.out[start:])).strip()
            url = (href or "").strip()
            if url and _LINK_URL.match(url) and url != label and url.removeprefix("mailto:") != label:
                self._emit(f" ({url})" if label else url)

    def handle_data(self, data: str) -> None:
        text = _SPACES.sub(" ", data)  # a newline in HTML source is a space
        if not self.hidden and (text.strip() or not self.pending):
            self._emit(text)


def html_to_text(html: str) -> str:
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(parser.out).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")
