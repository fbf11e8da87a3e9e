"""HTML to the text a browser shows: scripts, styles and the head dropped (the title kept, first),
a line break wherever a block element starts or ends, white space collapsed outside <pre>.

Plain Python (the standard library's HTMLParser): the parse workers import it.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Elements whose text a browser never shows.
HIDDEN_ELEMENTS = frozenset({"script", "style", "noscript", "template", "head"})
# Elements that end a line of visible text.
BLOCK_ELEMENTS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "caption", "dd", "details", "div", "dl", "dt",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
        "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "thead", "tfoot", "tr", "ul",
    }
)  # fmt: skip
CELL_ELEMENTS = frozenset({"td", "th"})


# HTML collapses runs of these (ASCII whitespace only: a no-break space is text) into one space.
HTML_WHITESPACE = re.compile(r"[ \t\n\r\f]+")


class VisibleTextParser(HTMLParser):
    """Collects the text a browser would show, with a newline wherever a block element starts or ends."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.at_line_start = True
        self.hidden_depth = 0
        self.pre_depth = 0
        self.title_parts: list[str] = []
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        elif tag in HIDDEN_ELEMENTS:
            self.hidden_depth += 1
        self.mark_boundary(tag)
        if tag == "pre":
            self.pre_depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.mark_boundary(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in HIDDEN_ELEMENTS and self.hidden_depth > 0:
            self.hidden_depth -= 1
        self.mark_boundary(tag)
        if tag == "pre" and self.pre_depth > 0:
            self.pre_depth -= 1

    def mark_boundary(self, tag: str) -> None:
        if self.hidden_depth > 0:
            return
        if tag in BLOCK_ELEMENTS:
            self.end_line()
        elif tag in CELL_ELEMENTS:
            self.append_flow(" ")

    def end_line(self) -> None:
        if len(self.parts) > 0 and self.pre_depth == 0:
            self.parts[-1] = self.parts[-1].rstrip(" ")
        self.parts.append("\n")
        self.at_line_start = True

    def append_flow(self, text: str) -> None:
        """Adds text outside <pre>: whitespace collapsed, none at a line start, never two spaces in a row."""
        text = HTML_WHITESPACE.sub(" ", text)
        if self.at_line_start or (len(self.parts) > 0 and self.parts[-1].endswith(" ")):
            text = text.lstrip(" ")
        if text == "":
            return
        self.parts.append(text)
        self.at_line_start = False

    def handle_data(self, data: str) -> None:
        if self.in_title:
            # The title sits inside <head>, which is otherwise hidden; it names the page, so keep it.
            self.title_parts.append(data)
        elif self.hidden_depth > 0:
            return
        elif self.pre_depth > 0:
            self.parts.append(data)
            self.at_line_start = data.endswith("\n")
        else:
            self.append_flow(data)

    def text(self) -> str:
        title = HTML_WHITESPACE.sub(" ", "".join(self.title_parts)).strip(" ")
        # Keep a blank line between blocks so paragraph breaks read as paragraph breaks, but only one.
        body = re.sub(r"\n{3,}", "\n\n", "".join(self.parts)).strip("\n")
        first_line = body.split("\n", 1)[0]
        if title == "" or first_line == title:
            return body
        return f"{title}\n\n{body}" if body != "" else title


def html_to_text(html: str) -> str:
    parser = VisibleTextParser()
    parser.feed(html)
    parser.close()
    return parser.text()


