"""One file in, its chunks out, in plain Python: the steps of indexing a file (`read_file`, then
`chunk_pages`: clean and chunk) and `parse_file`, what a parse worker does with them.

The same steps are the Haystack components' (`converters.PageConverter` reads, `chunking.PageChunker`
cleans and chunks), so a pipeline of those yields the chunks `spanqa index` yields.
`parse_file(task)` never raises for a bad file: the returned ParsedFile holds either chunks or the
reason the file cannot be indexed. It runs inside a worker process (see `workers.py`), so a parser
that hangs, crashes or eats memory costs that file only.

A chunk's `content` is cleaned text (see `cleaning.py`); `start`/`end` are its span in the page
text that `read_pages` returns, and `pieces` maps offsets inside the content back to that page text
(None when the content is the page text `[start:end]` verbatim).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spanqa.chunk_meta import file_type_of
from spanqa.errors import DocumentError
from spanqa.indexing.formats.cleaning import CleanPage, clean_pages
from spanqa.indexing.formats.extraction import PDF_SUFFIXES, read_bytes, read_document, short_message
from spanqa.indexing.ingest.spans import chunk_spans, context_chunk_spans, word_spans
from spanqa.paths import user_path
from spanqa.settings import ChunkingSettings, OcrSettings, ParseSettings

logger = logging.getLogger(__name__)

# Words-based token estimate (used without the reader's tokenizer): a word costs one token, plus one
# per punctuation mark, plus one per ESTIMATE_CHARS_PER_PIECE letters beyond the first piece.
# Calibrated against distilbert-base-cased on SQuAD dev text so that it overestimates: see
# `estimate_tokens` and docs/concepts/pipeline.md ("Chunks").
ESTIMATE_CHARS_PER_PIECE = 5
PUNCTUATION = re.compile(r"[^\w\s]")


@dataclass(frozen=True)
class ChunkSettings:
    """How an index's pages are cut, as its manifest records them: chunk and overlap sizes in tokens
    of `tokenizer` (or estimated from words), the chunk mode, cleaning and PDF reading order.

    Those five are the `ChunkingSettings` a user gives (`chunk_tokens`, `chunk_overlap_tokens`,
    `chunk_mode`, `clean_text`, `layout_reading_order`): their defaults and checks are declared
    there, and `chunking` is them as such. `tokenizer` names the tokenizer (the reader model) in the
    index manifest; `tokenizer_file` is the tokenizer.json counted with, None to estimate tokens
    from words.
    """

    max_tokens: int = ChunkingSettings.chunk_tokens
    overlap_tokens: int = ChunkingSettings.chunk_overlap_tokens
    tokenizer: str | None = None
    tokenizer_file: str | None = None
    clean: bool = ChunkingSettings.clean_text
    layout: bool = ChunkingSettings.layout_reading_order
    # "context": cores partition the text and are embedded, each widened by overlap_tokens on both
    # sides for the reader; "overlap": consecutive chunks share overlap_tokens, all of it embedded.
    mode: str = ChunkingSettings.chunk_mode

    def __post_init__(self) -> None:
        """Each value is checked as the setting it is (`chunking` makes the ChunkingSettings)."""
        self.chunking

    @property
    def chunking(self) -> ChunkingSettings:
        """These settings as the user gives them (making them checks each value)."""
        return ChunkingSettings(
            chunk_tokens=self.max_tokens, chunk_overlap_tokens=self.overlap_tokens, chunk_mode=self.mode,
            clean_text=self.clean, layout_reading_order=self.layout,
        )

    @classmethod
    def for_reader(cls, reader_model: str | None, chunking: ChunkingSettings | None = None) -> ChunkSettings:
        """The settings of a new index: `chunking` (default: the declared defaults), sizes in tokens
        of the reader's tokenizer (estimated from words when it cannot be loaded)."""
        chunking = ChunkingSettings() if chunking is None else chunking
        return cls(
            max_tokens=chunking.chunk_tokens, overlap_tokens=chunking.chunk_overlap_tokens,
            tokenizer=reader_model, tokenizer_file=resolve_tokenizer_file(reader_model),
            clean=chunking.clean_text, layout=chunking.layout_reading_order, mode=chunking.chunk_mode,
        )

    @classmethod
    def from_manifest(cls, recorded: Mapping[str, Any]) -> ChunkSettings:
        """The settings an index recorded (`manifest()`), kept by every later run into it; a value
        an older index did not record is the default."""
        tokenizer = recorded.get("tokenizer")
        return cls(
            max_tokens=int(recorded.get("max_tokens", ChunkingSettings.chunk_tokens)),
            overlap_tokens=int(recorded.get("overlap_tokens", ChunkingSettings.chunk_overlap_tokens)),
            tokenizer=tokenizer,
            tokenizer_file=resolve_tokenizer_file(tokenizer),
            clean=bool(recorded.get("clean", ChunkingSettings.clean_text)),
            layout=bool(recorded.get("layout", ChunkingSettings.layout_reading_order)),
            mode=str(recorded.get("mode", ChunkingSettings.chunk_mode)),
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
    max_file_bytes: int | None = int(ParseSettings.max_file_mb * 1024 * 1024)
    ocr: str = OcrSettings.ocr  # OCR engine for pages without a usable text layer ("off": none)


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
        """Whether the file parsed (it has no `reason`)."""
        return self.reason is None

    def to_json(self) -> dict[str, Any]:
        """Every field, as plain JSON values."""
        return asdict(self)


_TOKENIZERS: dict[str, Any] = {}


def resolve_tokenizer_file(model: str | None) -> str | None:
    """tokenizer.json of a reader model (local directory, or hub id in the local cache / downloadable).

    None when it cannot be had: chunk sizes are then estimated from words.
    """
    if not model:
        return None
    directory = user_path(model)
    if directory.is_dir():
        candidate = directory / "tokenizer.json"
        return str(candidate) if candidate.is_file() else None
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    for local_only in (True, False):
        try:
            return str(hf_hub_download(model, "tokenizer.json", local_files_only=local_only))
        except Exception:  # noqa: BLE001 - offline, unknown id, no tokenizer.json: estimate instead
            continue
    logger.warning("cannot load the tokenizer of '%s': chunk sizes are estimated from words", model)
    return None


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


def password_candidates(path: Path, password: str | None, passwords: Mapping[str, str] | None) -> tuple[str, ...]:
    """Passwords to try for `path`: its entry in `passwords` (by absolute path, path relative to the
    working directory, trailing path, or file name), then `password`."""
    found: list[str] = []
    if passwords:
        resolved = path.resolve()
        for key, value in passwords.items():
            key_path = Path(key).expanduser()
            if key_path.is_absolute():
                matches = key_path.resolve() == resolved
            else:
                key_posix = key_path.as_posix()
                matches = key_posix == path.name or resolved.as_posix().endswith("/" + key_posix)
            if matches and isinstance(value, str):
                found.append(value)
    if password is not None:
        found.append(password)
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class FileText:
    """A file read: its page texts (item i is page i+1), the pages (1-based) whose text was OCR'd, its SHA-256."""

    pages: list[str]
    ocr_pages: tuple[int, ...]
    sha256: str


def read_file(
    path: Path,
    *,
    passwords: tuple[str, ...] = (),
    layout: bool = ChunkingSettings.layout_reading_order,
    ocr: str = OcrSettings.ocr,
    max_file_bytes: int | None = int(ParseSettings.max_file_mb * 1024 * 1024),
    before_ocr_page: Callable[[], None] | None = None,
) -> FileText:
    """Step 1 of indexing a file: its page texts. Raises DocumentError with the reason it cannot be read."""
    if max_file_bytes is not None:
        try:
            size = path.stat().st_size
        except OSError:
            size = 0  # read_bytes reports it
        if size > max_file_bytes:
            limit_mb = max_file_bytes / (1024 * 1024)
            raise DocumentError(
                path, f"too large: {size / (1024 * 1024):.0f} MB (limit {limit_mb:.0f} MB; raise it with --max-file-mb)"
            )
    if path.is_dir():
        raise DocumentError(path, "is a directory (list its files with discover_files)")
    data = read_bytes(path)
    document = read_document(
        path, passwords=passwords, layout=layout, data=data, ocr=ocr, before_ocr_page=before_ocr_page
    )
    return FileText(document.pages, document.ocr_pages, hashlib.sha256(data).hexdigest())


def chunk_pages(file_type: str, pages: Sequence[tuple[int, str]], settings: ChunkSettings) -> list[ChunkRecord]:
    """Steps 2 and 3 of indexing a file: its (page number, page text) pairs cleaned together (running
    headers are found across them; PDF only) and cut into chunks. Blank pages may be left out: they
    change nothing."""
    texts = [text for _, text in pages]
    if settings.clean and "." + file_type in PDF_SUFFIXES:
        cleaned = clean_pages(texts)
    else:
        cleaned = [CleanPage.identity(text) for text in texts]
    chunks: list[ChunkRecord] = []
    for (number, _), page in zip(pages, cleaned):
        chunks.extend(chunk_page(page, number, settings))
    return chunks


def failure_reason(exc: Exception) -> str:
    """Why a file cannot be indexed, from what reading or chunking it raised, in words a user can act on."""
    if isinstance(exc, DocumentError):
        return exc.reason
    if isinstance(exc, MemoryError):
        return "out of memory while parsing"
    if isinstance(exc, RecursionError):
        return "corrupt file: structure nested too deeply"
    return f"cannot parse: {short_message(exc)}"


def parse_file(task: ParseTask, before_ocr_page: Callable[[], None] | None = None) -> ParsedFile:
    """Read, clean and chunk one file; a file that cannot be indexed comes back with its reason.
    `before_ocr_page` is called before each page is OCR'd (a worker asks for more time there)."""
    began = time.perf_counter()
    path = Path(task.path)
    result = ParsedFile(path=task.path)
    try:
        text = read_file(
            path, passwords=task.passwords, layout=task.chunking.layout, ocr=task.ocr,
            max_file_bytes=task.max_file_bytes, before_ocr_page=before_ocr_page,
        )
        result.sha256 = text.sha256
        result.ocr_pages = text.ocr_pages
        result.page_count = len(text.pages)
        result.pages_with_text = sum(1 for page in text.pages if page.strip() != "")
        result.chunks = chunk_pages(file_type_of(path), list(enumerate(text.pages, start=1)), task.chunking)
        if not result.chunks:
            raise DocumentError(path, "no text")
    except Exception as exc:  # noqa: BLE001 - a parser bug on one file must not stop the batch
        result.reason = failure_reason(exc)
        result.chunks = []
    result.seconds = time.perf_counter() - began
    return result
