"""Span arithmetic of chunking: sentences and overlapping, sentence-aligned chunks as character spans.

Plain functions without Haystack (the parse workers import them); `chunking.PageChunker` turns the
spans into Documents.
"""

from __future__ import annotations

import hashlib
import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from spanqa.errors import ConfigError
from spanqa.indexing.formats.cleaning import BLOCK_START_LINE, HEADING_LINE

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


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every word (run of non-space characters) of `text`: the units chunks are made of."""
    return [(match.start(), match.end()) for match in WORD.finditer(text)]


def chunk_spans(
    text: str, max_words: int, overlap_words: int, weights: Sequence[int] | None = None
) -> list[tuple[int, int]]:
    """Chunks of `text` as (start, end) character spans: at most `max_words` words each, ending at
    sentence boundaries where possible, and together covering every word.

    Each chunk after the first repeats about `overlap_words` words of the one before, as whole
    trailing sentences when those fit in the overlap, so an answer near a cut is whole in one chunk.
    A sentence longer than `max_words` is cut between words.

    With `weights` (one positive number per word of `word_spans(text)`, e.g. its tokens), sizes are
    counted in those units instead of words: a chunk holds words weighing at most `max_words` in
    all (a single word heavier than that is a chunk of its own), its overlap at most `overlap_words`.
    """
    validate_chunk_settings(max_words, overlap_words)
    words = word_spans(text)
    word_count = len(words)
    if word_count == 0:
        return []
    if weights is None:
        prefix = list(range(word_count + 1))
    else:
        if len(weights) != word_count:
            raise ValueError(f"{len(weights)} weights for {word_count} words")
        prefix = [0]
        for weight in weights:
            prefix.append(prefix[-1] + max(1, int(weight)))
    word_starts = [start for start, _ in words]
    # Word indices where a sentence starts; a chunk may end just before any of them, or at the end.
    sentence_starts = sorted({bisect_left(word_starts, start) for start, _ in sentence_spans(text)})
    cut_points = [index for index in sentence_starts if index > 0] + [word_count]

    word_ranges: list[tuple[int, int]] = []
    start = 0
    while True:
        # The most words from `start` that fit in max_words units (at least one).
        limit = max(start + 1, bisect_right(prefix, prefix[start] + max_words) - 1)
        if limit >= word_count:
            word_ranges.append((start, word_count))
            break
        end = last_cut_point(cut_points, start, limit)
        # A chunk under half full means the next sentence is too long to fit: cut it between words
        # rather than leave a stub chunk.
        if end is None or prefix[end] - prefix[start] < max(1, max_words // 2):
            end = limit
        word_ranges.append((start, end))
        start = next_chunk_start(sentence_starts, prefix, start, end, overlap_words)
    return [(words[first][0], words[last - 1][1]) for first, last in word_ranges]


def last_cut_point(cut_points: list[int], start: int, limit: int) -> int | None:
    index = bisect_right(cut_points, limit) - 1
    if index >= 0 and cut_points[index] > start:
        return cut_points[index]
    return None


def next_chunk_start(sentence_starts: list[int], prefix: list[int], start: int, end: int, overlap: int) -> int:
    if overlap == 0:
        return end
    # The first word from which the rest of the chunk weighs at most `overlap` units.
    earliest = max(bisect_left(prefix, prefix[end] - overlap), start + 1)
    if earliest > end:
        return end
    # The earliest sentence start inside the overlap window: as many whole trailing sentences as fit.
    index = bisect_left(sentence_starts, earliest)
    if index < len(sentence_starts) and sentence_starts[index] < end:
        return sentence_starts[index]
    # The last sentence alone is longer than the overlap: repeat its last words instead.
    return min(earliest, end)


def chunk_id(source: object, page: object, start: int, end: int, content: str) -> str:
    """Identifies a chunk by where it comes from and what it says, so re-indexing a file yields the same ids."""
    key = json.dumps([source, page, start, end, content], ensure_ascii=False, default=str)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()




def word_ranges_of(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Character spans of whole words as (first word, one past the last word) indices of word_spans(text)."""
    words = word_spans(text)
    starts = [start for start, _ in words]
    ends = [end for _, end in words]
    return [(bisect_left(starts, start), bisect_right(ends, end)) for start, end in spans]


def context_chunk_spans(
    text: str, max_units: int, margin_units: int, weights: Sequence[int] | None = None
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Chunks as (core span, chunk span) pairs: the cores partition the words of `text` (at most
    `max_units` each, cut at sentence ends where possible, as `chunk_spans` without overlap cuts them);
    each chunk is its core widened by up to `margin_units` on each side, by whole sentences where they
    fit, else by words.

    The core is what the chunk is found by (it is embedded), the chunk what the reader reads: so an
    answer at a core's edge still has its context, and no text is embedded twice.
    """
    validate_chunk_settings(max_units, 0)
    if isinstance(margin_units, bool) or not isinstance(margin_units, int) or margin_units < 0:
        raise ConfigError(f"margin must be an integer >= 0, got {margin_units!r}")
    cores = chunk_spans(text, max_units, 0, weights)
    if not cores:
        return []
    words = word_spans(text)
    word_count = len(words)
    prefix = [0]
    for weight in weights if weights is not None else [1] * word_count:
        prefix.append(prefix[-1] + max(1, int(weight)))
    word_starts = [start for start, _ in words]
    sentence_starts = sorted({bisect_left(word_starts, start) for start, _ in sentence_spans(text)})
    result = []
    for (core_start, core_end), (first, last) in zip(cores, word_ranges_of(text, cores)):
        left = first
        if margin_units > 0 and first > 0:
            earliest = bisect_left(prefix, prefix[first] - margin_units)
            index = bisect_left(sentence_starts, earliest)
            left = sentence_starts[index] if index < len(sentence_starts) and sentence_starts[index] < first else earliest
        right = last
        if margin_units > 0 and last < word_count:
            latest = bisect_right(prefix, prefix[last] + margin_units) - 1
            index = bisect_right(sentence_starts, latest) - 1
            right = sentence_starts[index] if index >= 0 and sentence_starts[index] > last else latest
        right = max(right, last)
        left = min(left, first)
        result.append(((core_start, core_end), (words[left][0], words[right - 1][1])))
    return result
