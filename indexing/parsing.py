"""One file in, its chunks out: what a parse worker does (read, clean, chunk), in plain Python.

`parse_file(task)` never raises for a bad file: the returned ParsedFile holds either chunks or the
reason the file cannot be indexed. It runs inside a worker process (see `workers.py`), so a parser
that hangs, crashes or eats memory costs that file only.

A chunk's `content` is cleaned text (see `cleaning.py`); `start`/`end` are its span in the page
text that `read_pages` returns, and `pieces` maps offsets inside the content back to that page text
(None when the content is the page text `[start:end]` verbatim).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spanqa import defaults
from spanqa.errors import ConfigError, DocumentError
from spanqa.indexing.cleaning import CleanPage, clean_pages
from spanqa.indexing.reading import PDF_SUFFIXES, read_bytes, read_document, short_message
from spanqa.indexing.spans import chunk_spans, context_chunk_spans, word_spans

# Words-based token estimate (used without the reader's tokenizer): a word costs one token, plus one
# per punctuation mark, plus one per ESTIMATE_CHARS_PER_PIECE letters beyond the first piece.
# Calibrated against distilbert-base-cased on SQuAD dev text so that it overestimates: see
# `estimate_tokens` and the README's "Chunk sizes".
ESTIMATE_CHARS_PER_PIECE = 5
PUNCTUATION = re.compile(r"[^\w\s]")
CHUNK_MODES = ("context", "overlap")


@dataclass(frozen=True)
class ChunkSettings:
    """How pages are cut: chunk and overlap sizes in tokens of `tokenizer` (or estimated from words).

    `tokenizer` names the tokenizer (the reader model) in the index manifest; `tokenizer_file` is
    the tokenizer.json counted with, None to estimate tokens from words.
    """

    max_tokens: int = defaults.CHUNK_TOKENS
    overlap_tokens: int = defaults.CHUNK_OVERLAP_TOKENS
    tokenizer: str | None = None
    tokenizer_file: str | None = None
    clean: bool = defaults.CLEAN_TEXT
    layout: bool = defaults.LAYOUT_READING_ORDER
    # "context": cores partition the text and are embedded, each widened by overlap_tokens on both
    # sides for the reader; "overlap": consecutive chunks share overlap_tokens, all of it embedded.
    mode: str = defaults.CHUNK_MODE

    def __post_init__(self) -> None:
        for name in ("max_tokens", "overlap_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "max_tokens" else 0):
                raise ConfigError(f"{name} must be a whole number ({'>= 1' if name == 'max_tokens' else '>= 0'}), got {value!r}")
        if self.mode not in CHUNK_MODES:
            raise ConfigError(f"chunk mode must be one of {CHUNK_MODES}, got {self.mode!r}")
        if self.mode == "overlap" and self.overlap_tokens >= self.max_tokens:
            raise ConfigError(
                f"overlap_tokens ({self.overlap_tokens}) must be smaller than max_tokens ({self.max_tokens})"
            )

    def manifest(self) -> dict[str, Any]:
        """What the index records about how its chunks were cut."""
        return {
            "unit": "tokens" if self.tokenizer_file is not None else "estimated tokens (words)",
            "tokenizer": self.tokenizer if self.tokenizer_file is not None else None,
            "max_tokens": self.max_tokens,
            "overlap_tokens": self.overlap_tokens,
            "mode": self.mode,
            "clean": self.clean,
            "layout": self.layout,
        }


@dataclass(frozen=True)
class ParseTask:
    path: str
    passwords: tuple[str, ...] = ()
    chunking: ChunkSettings = field(default_factory=ChunkSettings)
    max_file_bytes: int | None = defaults.MAX_FILE_MB * 1024 * 1024
    ocr: str = defaults.OCR  # OCR engine for pages without a usable text layer ("off": none)


@dataclass(frozen=True)
class ChunkRecord:
    """A chunk: `content` (cleaned text) read by the reader, `content[embed_start:embed_end]` embedded."""

    content: str
    page: int
    start: int
    end: int
    pieces: list[list[int]] | None = None
    embed_start: int = 0
    embed_end: int | None = None

    @property
    def embed_text(self) -> str:
        return self.content[self.embed_start : self.embed_end]


@dataclass
class ParsedFile:
    """A file's chunks, or the reason it has none (`reason` is None when it parsed)."""

    path: str
    reason: str | None = None
    sha256: str | None = None
    page_count: int = 0
    pages_with_text: int = 0
    ocr_pages: tuple[int, ...] = ()  # pages (1-based) whose text was OCR'd
    chunks: list[ChunkRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.reason is None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_TOKENIZERS: dict[str, Any] = {}


def load_tokenizer(tokenizer_file: str) -> Any:
    """A `tokenizers.Tokenizer` from tokenizer.json, without truncation or padding, cached per process."""
    tokenizer = _TOKENIZERS.get(tokenizer_file)
    if tokenizer is None:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(tokenizer_file)
        tokenizer.no_truncation()
        tokenizer.no_padding()
        _TOKENIZERS[tokenizer_file] = tokenizer
    return tokenizer


def estimate_tokens(word: str) -> int:
    punctuation = len(PUNCTUATION.findall(word))
    letters = len(word) - punctuation
    return 1 + punctuation + max(0, math.ceil(letters / ESTIMATE_CHARS_PER_PIECE) - 1)


def token_weights(text: str, words: list[tuple[int, int]], tokenizer_file: str | None) -> list[int]:
    """Tokens each word of `text` costs the reader (estimated from the word without a tokenizer)."""
    if tokenizer_file is None:
        return [estimate_tokens(text[start:end]) for start, end in words]
    encoding = load_tokenizer(tokenizer_file).encode(text, add_special_tokens=False)
    starts = [start for start, _ in words]
    counts = [0] * len(words)
    for token_start, token_end in encoding.offsets:
        if token_end <= token_start:
            continue
        index = bisect_right(starts, token_start) - 1
        if index >= 0:
            counts[index] += 1
    return [max(1, count) for count in counts]


def chunk_page(page: CleanPage, page_number: int, settings: ChunkSettings) -> list[ChunkRecord]:
    text = page.text
    words = word_spans(text)
    if not words:
        return []
    weights = token_weights(text, words, settings.tokenizer_file)
    if settings.mode == "context":
        spans = context_chunk_spans(text, settings.max_tokens, settings.overlap_tokens, weights)
    else:
        spans = [(span, span) for span in chunk_spans(text, settings.max_tokens, settings.overlap_tokens, weights)]
    records = []
    for (core_start, core_end), (start, end) in spans:
        raw_start, raw_end = page.raw_span(start, end)
        pieces = page.pieces(start, end)
        verbatim = len(pieces) == 1 and raw_end - raw_start == end - start
        records.append(
            ChunkRecord(
                content=text[start:end],
                page=page_number,
                start=raw_start,
                end=raw_end,
                pieces=None if verbatim else pieces,
                embed_start=core_start - start,
                embed_end=core_end - start,
            )
        )
    return records


def clean_document(path: Path, pages: list[str], clean: bool) -> list[CleanPage]:
    if clean and path.suffix.lower() in PDF_SUFFIXES:
        return clean_pages(pages)
    return [CleanPage.identity(page) for page in pages]


def parse_file(task: ParseTask, before_ocr_page: Callable[[], None] | None = None) -> ParsedFile:
    """Read, clean and chunk one file; a file that cannot be indexed comes back with its reason.
    `before_ocr_page` is called before each page is OCR'd (a worker asks for more time there)."""
    began = time.perf_counter()
    path = Path(task.path)
    result = ParsedFile(path=task.path)
    try:
        if task.max_file_bytes is not None:
            try:
                size = path.stat().st_size
            except OSError:
                size = 0  # read_bytes reports it
            if size > task.max_file_bytes:
                limit_mb = task.max_file_bytes / (1024 * 1024)
                raise DocumentError(
                    path, f"too large: {size / (1024 * 1024):.0f} MB (limit {limit_mb:.0f} MB; raise it with --max-file-mb)"
                )
        if path.is_dir():
            raise DocumentError(path, "is a directory (list its files with discover_files)")
        data = read_bytes(path)
        result.sha256 = hashlib.sha256(data).hexdigest()
        document = read_document(
            path, passwords=task.passwords, layout=task.chunking.layout, data=data, ocr=task.ocr,
            before_ocr_page=before_ocr_page,
        )
        pages = document.pages
        result.ocr_pages = document.ocr_pages
        result.page_count = len(pages)
        result.pages_with_text = sum(1 for page in pages if page.strip() != "")
        cleaned = clean_document(path, pages, task.chunking.clean)
        for number, page in enumerate(cleaned, start=1):
            result.chunks.extend(chunk_page(page, number, task.chunking))
        if not result.chunks:
            raise DocumentError(path, "no text")
    except DocumentError as exc:
        result.reason = exc.reason
        result.chunks = []
    except MemoryError:
        result.reason = "out of memory while parsing"
        result.chunks = []
    except RecursionError:
        result.reason = "corrupt file: structure nested too deeply"
        result.chunks = []
    except Exception as exc:  # noqa: BLE001 - a parser bug on one file must not stop the batch
        result.reason = f"cannot parse: {short_message(exc)}"
        result.chunks = []
    result.seconds = time.perf_counter() - began
    return result
