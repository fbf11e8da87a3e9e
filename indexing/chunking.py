"""Page texts cut into overlapping, sentence-aligned chunks, each one a character span of its page.

The span arithmetic lives in plain functions (`sentence_spans`, `chunk_spans`) so it can be tested
without Haystack; `PageChunker` only turns spans into Documents.
"""

from __future__ import annotations

import hashlib
import json
import re
from bisect import bisect_left, bisect_right

from haystack import Document, component, default_from_dict, default_to_dict

from spanqa import defaults
from spanqa.errors import ConfigError

# Lower-cased, without the final period. A period after one of these rarely ends a sentence.
ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "rev", "gen", "col", "capt", "lt", "sgt",
        "gov", "sen", "rep", "hon", "messrs", "vs", "etc", "cf", "al", "approx", "ca", "appx", "dept", "est",
        "fig", "figs", "eq", "eqs", "no", "nos", "vol", "vols", "pp", "p", "ch", "sec", "art", "para", "ref",
        "inc", "ltd", "co", "corp", "bros", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
        "oct", "nov", "dec", "mon", "tue", "wed", "thu", "fri", "sat", "sun", "min", "max", "avg", "incl",
        "excl", "resp", "viz", "ibid", "op", "ed", "eds", "trans", "univ", "assn", "ave", "blvd", "rd",
    }
)  # fmt: skip

WORD = re.compile(r"\S+")
NON_SPACE = re.compile(r"\S")
# Terminal punctuation, optionally closed by quotes or brackets, then whitespace.
SENTENCE_END = re.compile(r"(?:[.!?]+|…)[\"'”’)\]]*(?=\s)")
# Dotted abbreviations such as "e.g", "i.e", "U.S" (the final period is matched separately).
DOTTED_ABBREVIATION = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")
# A line that starts a list item, a Markdown heading or a quotation starts a new sentence even
# without a blank line before it; an ordinary line break is just a wrapped line.
BLOCK_START_LINE = re.compile(r"[ \t]*(?:[-*+•‣◦▪–—]\s|#{1,6}\s|\d{1,3}[.)]\s|[A-Za-z][.)]\s|>)")
HEADING_LINE = re.compile(r"[ \t]*#{1,6}\s")


def line_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    line_start = 0
    for match in re.finditer("\n", text):
        spans.append((line_start, match.start()))
        line_start = match.end()
    spans.append((line_start, len(text)))
    return spans


def block_spans(text: str) -> list[tuple[int, int]]:
    """Runs of lines no sentence crosses: paragraphs split at blank lines, list items, headings."""
    blocks: list[tuple[int, int]] = []
    block_start: int | None = None
    block_end = 0
    for line_start, line_end in line_spans(text):
        line = text[line_start:line_end]
        if line.strip() == "":
            if block_start is not None:
                blocks.append((block_start, block_end))
                block_start = None
            continue
        starts_block = BLOCK_START_LINE.match(line) is not None
        follows_heading = block_start is not None and HEADING_LINE.match(text[block_start:block_end]) is not None
        if block_start is not None and (starts_block or follows_heading):
            blocks.append((block_start, block_end))
            block_start = None
        if block_start is None:
            block_start = line_start
        block_end = line_end
    if block_start is not None:
        blocks.append((block_start, block_end))
    return [strip_span(text, start, end) for start, end in blocks]


def strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def is_false_sentence_end(text: str, block_start: int, match: re.Match[str], next_start: int) -> bool:
    """Whether the punctuation in `match` ends an abbreviation or an initial rather than a sentence."""
    if text[next_start].islower():
        # "e.g. the", "approx. five": a sentence does not begin in lower case.
        return True
    if match.group().rstrip("\"'”’)]") != ".":
        return False  # "!", "?", "..." end sentences
    token_start = match.start()
    while token_start > block_start and not text[token_start - 1].isspace():
        token_start -= 1
    token = text[token_start : match.start()].lstrip("\"'“‘([")
    if token.lower() in ABBREVIATIONS:
        return True
    if len(token) == 1 and token.isalpha() and token.isupper():
        return True  # an initial: "J. R. Tolkien"
    return DOTTED_ABBREVIATION.fullmatch(token) is not None


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentences of `text` as (start, end) character spans, in order, without surrounding whitespace.

    Sentences end at ., ! or ? followed by whitespace (unless the period closes a known abbreviation,
    an initial, or the next word starts in lower case), at blank lines, and before list items and
    headings. Every non-whitespace character of `text` lies in exactly one span.
    """
    spans: list[tuple[int, int]] = []
    for block_start, block_end in block_spans(text):
        sentence_start = block_start
        for match in SENTENCE_END.finditer(text, block_start, block_end):
            next_word = NON_SPACE.search(text, match.end(), block_end)
            if next_word is None:
                break
            if is_false_sentence_end(text, block_start, match, next_word.start()):
                continue
            spans.append((sentence_start, match.end()))
            sentence_start = next_word.start()
        spans.append((sentence_start, block_end))
    return spans


def validate_chunk_settings(max_words: int, overlap_words: int) -> None:
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
        raise ConfigError(f"max_words must be a positive integer, got {max_words!r}")
    if isinstance(overlap_words, bool) or not isinstance(overlap_words, int) or overlap_words < 0:
        raise ConfigError(f"overlap_words must be an integer >= 0, got {overlap_words!r}")
    if overlap_words >= max_words:
        raise ConfigError(
            f"overlap_words ({overlap_words}) must be smaller than max_words ({max_words}), "
            "or consecutive chunks would never advance"
        )


def chunk_spans(text: str, max_words: int, overlap_words: int) -> list[tuple[int, int]]:
    """Chunks of `text` as (start, end) character spans: at most `max_words` words each, ending at
    sentence boundaries where possible, and together covering every word.

    Each chunk after the first repeats about `overlap_words` words of the one before, as whole
    trailing sentences when those fit in the overlap, so an answer near a cut is whole in one chunk.
    A sentence longer than `max_words` is cut between words.
    """
    validate_chunk_settings(max_words, overlap_words)
    words = [(match.start(), match.end()) for match in WORD.finditer(text)]
    word_count = len(words)
    if word_count == 0:
        return []
    word_starts = [start for start, _ in words]
    # Word indices where a sentence starts; a chunk may end just before any of them, or at the end.
    sentence_starts = sorted({bisect_left(word_starts, start) for start, _ in sentence_spans(text)})
    cut_points = [index for index in sentence_starts if index > 0] + [word_count]

    word_ranges: list[tuple[int, int]] = []
    start = 0
    while True:
        limit = start + max_words
        if limit >= word_count:
            word_ranges.append((start, word_count))
            break
        end = last_cut_point(cut_points, start, limit)
        # A chunk under half full means the next sentence is too long to fit: cut it between words
        # rather than leave a stub chunk.
        if end is None or end - start < max(1, max_words // 2):
            end = limit
        word_ranges.append((start, end))
        start = next_chunk_start(sentence_starts, start, end, overlap_words)
    return [(words[first][0], words[last - 1][1]) for first, last in word_ranges]


def last_cut_point(cut_points: list[int], start: int, limit: int) -> int | None:
    index = bisect_right(cut_points, limit) - 1
    if index >= 0 and cut_points[index] > start:
        return cut_points[index]
    return None


def next_chunk_start(sentence_starts: list[int], start: int, end: int, overlap_words: int) -> int:
    if overlap_words == 0:
        return end
    earliest = max(end - overlap_words, start + 1)
    # The earliest sentence start inside the overlap window: as many whole trailing sentences as fit.
    index = bisect_left(sentence_starts, earliest)
    if index < len(sentence_starts) and sentence_starts[index] < end:
        return sentence_starts[index]
    # The last sentence alone is longer than the overlap: repeat its last words instead.
    return earliest


def chunk_id(source: object, page: object, start: int, end: int, content: str) -> str:
    """Identifies a chunk by where it comes from and what it says, so re-indexing a file yields the same ids."""
    key = json.dumps([source, page, start, end, content], ensure_ascii=False, default=str)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@component
class PageChunker:
    """Splits page Documents into chunk Documents whose meta says where in the page each chunk lies.

    A chunk's meta is its page's meta plus `start`/`end`: `page_text[start:end] == chunk.content`.
    """

    def __init__(self, max_words: int = defaults.CHUNK_WORDS, overlap_words: int = defaults.CHUNK_OVERLAP_WORDS):
        validate_chunk_settings(max_words, overlap_words)
        self.max_words = max_words
        self.overlap_words = overlap_words

    def to_dict(self) -> dict:
        return default_to_dict(self, max_words=self.max_words, overlap_words=self.overlap_words)

    @classmethod
    def from_dict(cls, data: dict) -> PageChunker:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict:
        chunks: list[Document] = []
        for page in documents:
            if page.content is None:
                continue
            for start, end in chunk_spans(page.content, self.max_words, self.overlap_words):
                content = page.content[start:end]
                meta = {**page.meta, "start": start, "end": end}
                identifier = chunk_id(page.meta.get("source"), page.meta.get("page"), start, end, content)
                chunks.append(Document(id=identifier, content=content, meta=meta))
        return {"documents": chunks}
