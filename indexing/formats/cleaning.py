"""Cleaning extracted PDF text for the reader and the embedder, with an exact map back to the page text.

Three edits, each one a deletion or a one-for-one character replacement, so every character of the
cleaned text comes from one character of the page text and offsets translate exactly:

- running headers and footers (a line among the first or last few of a page whose text, digits aside,
  recurs on most pages) are deleted;
- a word hyphenated across a line break ("infor-\\nmation") is joined by deleting the hyphen and break;
- a line break inside a paragraph becomes a space (blank lines, list items and headings keep theirs).

`CleanPage.raw_span(start, end)` turns a span of the cleaned text into the span of the page text
(`read_pages`) it was cleaned from.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass

# A line that starts a list item, a Markdown heading or a quotation starts a new block even without
# a blank line before it (its line break is kept here, and starts a sentence in `ingest.spans`); an
# ordinary line break is just a wrapped line.
BLOCK_START_LINE = re.compile(r"[ \t]*(?:[-*+•‣◦▪–—]\s|#{1,6}\s|\d{1,3}[.)]\s|[A-Za-z][.)]\s|>)")
HEADING_LINE = re.compile(r"[ \t]*#{1,6}\s")

# Lines looked at for running headers/footers at each end of a page.
EDGE_LINES = 3
# A header/footer candidate recurs on at least this share of the pages with text, and on at least
# MIN_REPEAT_PAGES pages (the share is below one half so that headers alternating between even and
# odd pages count).
MIN_REPEAT_SHARE = 0.4
MIN_REPEAT_PAGES = 3
MAX_HEADER_CHARS = 200
DIGITS = re.compile(r"\d+")
SPACES = re.compile(r"\s+")
# "infor-\nmation": a lower-case letter, a hyphen (or soft hyphen) ending the line, a lower-case letter.
HYPHEN_BREAK = re.compile(r"(?<=[a-zà-ÿ])[-\u00ad][ \t]*\n[ \t]*(?=[a-zà-ÿ])")
SOFT_HYPHEN_BREAK = re.compile(r"\u00ad[ \t]*\n[ \t]*")


@dataclass(frozen=True)
class CleanPage:
    """A page's cleaned text and the map back to its raw text.

    The map is piecewise: cleaned characters from `clean_starts[i]` on come from raw characters
    from `raw_starts[i]` on, one for one, until the next piece.
    """

    text: str
    clean_starts: tuple[int, ...]
    raw_starts: tuple[int, ...]

    @classmethod
    def identity(cls, text: str) -> CleanPage:
        """`text` as its own cleaned text: every offset maps to itself."""
        return cls(text, (0,), (0,))

    def to_raw(self, offset: int) -> int:
        """The raw offset of cleaned character `offset` (its start position)."""
        piece = max(0, bisect_right(self.clean_starts, offset) - 1)
        return self.raw_starts[piece] + offset - self.clean_starts[piece]

    def raw_span(self, start: int, end: int) -> tuple[int, int]:
        """The raw span a cleaned span [start, end) was cleaned from: first to last character."""
        if end <= start:
            raw = self.to_raw(start)
            return raw, raw
        return self.to_raw(start), self.to_raw(end - 1) + 1

    def pieces(self, start: int, end: int) -> list[list[int]]:
        """The map restricted to cleaned [start, end), offsets relative to `start` -> raw page offsets.

        `[[0, raw_start], [c1, r1], ...]`: the compact form chunks store in their meta.
        """
        first = max(0, bisect_right(self.clean_starts, start) - 1)
        pieces = [[0, self.to_raw(start)]]
        for index in range(first + 1, len(self.clean_starts)):
            clean = self.clean_starts[index]
            if clean >= end:
                break
            pieces.append([clean - start, self.raw_starts[index]])
        return pieces


def raw_offset(pieces: list[list[int]], offset: int) -> int:
    """A chunk-relative cleaned offset through a chunk's `pieces` (see CleanPage.pieces) to the page."""
    index = 0
    for position, (clean, _) in enumerate(pieces):
        if clean <= offset:
            index = position
        else:
            break
    clean, raw = pieces[index]
    return raw + offset - clean


def raw_span_of(pieces: list[list[int]], start: int, end: int) -> tuple[int, int]:
    if end <= start:
        raw = raw_offset(pieces, start)
        return raw, raw
    return raw_offset(pieces, start), raw_offset(pieces, end - 1) + 1


def header_key(line: str) -> str:
    return DIGITS.sub("#", SPACES.sub(" ", line.strip().lower()))


def edge_lines(text: str) -> list[tuple[int, int]]:
    """(start, end-including-newline) of the first and last EDGE_LINES non-blank lines of `text`."""
    lines: list[tuple[int, int]] = []
    position = 0
    for line in text.split("\n"):
        end = position + len(line)
        if line.strip() != "":
            lines.append((position, min(end + 1, len(text))))
        position = end + 1
    if len(lines) <= 2 * EDGE_LINES:
        return lines
    return lines[:EDGE_LINES] + lines[-EDGE_LINES:]


def running_lines(pages: list[str]) -> set[str]:
    """Header keys of lines that recur at the top or bottom of most pages."""
    with_text = [page for page in pages if page.strip() != ""]
    if len(with_text) < MIN_REPEAT_PAGES:
        return set()
    counts: Counter[str] = Counter()
    for page in with_text:
        keys = {header_key(page[start:end]) for start, end in edge_lines(page)}
        counts.update(key for key in keys if 0 < len(key) <= MAX_HEADER_CHARS)
    needed = max(MIN_REPEAT_PAGES, MIN_REPEAT_SHARE * len(with_text))
    return {key for key, count in counts.items() if count >= needed}


class _Builder:
    """Builds cleaned text from raw text by keeping, replacing (one for one) or deleting characters."""

    def __init__(self, raw: str):
        self.raw = raw
        self.parts: list[str] = []
        self.clean_length = 0
        self.clean_starts: list[int] = [0]
        self.raw_starts: list[int] = [0]
        self.expected_raw = 0  # raw offset the next kept character continues from

    def keep(self, raw_start: int, raw_end: int, replacement: str | None = None) -> None:
        if raw_end <= raw_start:
            return
        text = self.raw[raw_start:raw_end] if replacement is None else replacement
        if raw_start != self.expected_raw:
            if self.clean_starts[-1] == self.clean_length:
                self.raw_starts[-1] = raw_start  # nothing kept since the last piece began
            else:
                self.clean_starts.append(self.clean_length)
                self.raw_starts.append(raw_start)
        self.parts.append(text)
        self.clean_length += len(text)
        self.expected_raw = raw_end

    def page(self) -> CleanPage:
        return CleanPage("".join(self.parts), tuple(self.clean_starts), tuple(self.raw_starts))


def deleted_spans(text: str, running: set[str]) -> list[tuple[int, int]]:
    spans = []
    if running:
        for start, end in edge_lines(text):
            if header_key(text[start:end]) in running:
                spans.append((start, end))
    for pattern in (HYPHEN_BREAK, SOFT_HYPHEN_BREAK):
        spans.extend(match.span() for match in pattern.finditer(text))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def joinable_breaks(text: str) -> list[int]:
    """Positions of newlines inside paragraphs: between two non-blank lines, before no list item or heading."""
    positions = []
    for match in re.finditer("\n", text):
        before_start = text.rfind("\n", 0, match.start()) + 1
        before = text[before_start : match.start()]
        after_end = text.find("\n", match.end())
        after = text[match.end() : after_end if after_end != -1 else len(text)]
        if before.strip() == "" or after.strip() == "":
            continue
        if BLOCK_START_LINE.match(after) or HEADING_LINE.match(before):
            continue
        positions.append(match.start())
    return positions


def clean_page(text: str, running: set[str] = frozenset()) -> CleanPage:  # type: ignore[assignment]
    """One page cleaned (headers/footers in `running` removed, hyphenation and line breaks joined)."""
    builder = _Builder(text)
    deletions = deleted_spans(text, running)
    # Line breaks are judged on the text left after deletions, so work on kept stretches only.
    position = 0
    kept: list[tuple[int, int]] = []
    for start, end in deletions:
        kept.append((position, start))
        position = end
    kept.append((position, len(text)))
    # Newlines to turn into spaces: found on the raw text, minus those deleted.
    joins = set(joinable_breaks(text))
    for start, end in kept:
        cursor = start
        for newline in sorted(j for j in joins if start <= j < end):
            builder.keep(cursor, newline)
            builder.keep(newline, newline + 1, " ")
            cursor = newline + 1
        builder.keep(cursor, end)
    return builder.page()


def clean_pages(pages: list[str]) -> list[CleanPage]:
    """Every page of one document cleaned; running headers/footers are found across the document."""
    running = running_lines(pages)
    return [clean_page(page, running) for page in pages]


def comparable(text: str) -> str:
    """Text with hyphenated line breaks joined and white space runs as single spaces: what a raw
    span and its cleaned form have in common (running headers aside)."""
    text = HYPHEN_BREAK.sub("", SOFT_HYPHEN_BREAK.sub("", text))
    return SPACES.sub(" ", text).strip()


def same_text(raw: str, cleaned: str) -> bool:
    """Whether `cleaned` is what cleaning makes of `raw` (a page-text slice), headers aside."""
    return comparable(raw) == comparable(cleaned)
