"""The one schema of a chunk's metadata: `ChunkMeta`, and its one conversion to and from Haystack's
`Document.meta` (`to_meta` / `from_meta`).

Everything that writes chunks (ingest, `PageConverter`/`PageChunker`) builds a ChunkMeta and every
reader (records, API, CLI, service) reads one, instead of string keys. On disk (the store's meta
JSON) the keys are flat, exactly as they were before this type existed: `source`, `file_type`,
`page`, `page_count`, `start`, `end`, `sha256`, `pieces` (absent when None), `ocr` (absent when
None), and each key of `extra` (metadata a user attached when indexing: tags, dates, numbers) beside
them, so filters read `meta.source`, `meta.page`, `meta.tag` alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanqa.errors import ConfigError

# The key the retriever adds to a retrieved chunk's meta for the reader (its cosine similarity to the
# query): it describes a search, not the chunk, so it is no part of ChunkMeta and no user key may
# take its name.
SIMILARITY_KEY = "similarity"
RETRIEVAL_KEYS = (SIMILARITY_KEY,)


def file_type_of(source: str | Path) -> str:
    """A file's type as chunks record it for filters: its suffix in lower case without the dot ("pdf", "md")."""
    return Path(source).suffix.lower().lstrip(".")


def _whole(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"chunk meta '{name}' must be a whole number, got {value!r}")
    return value


@dataclass(frozen=True)
class ChunkMeta:
    """Where a chunk stands and what its file is.

    `start`/`end`: the chunk's span in the text of page `page` (1-based) that `read_pages(source)`
    returns; `pieces`: the map from offsets in the chunk's (cleaned) content to offsets in that
    page text (`[[offset in chunk, offset in page], ...]`), None when the content is
    `page_text[start:end]` verbatim; `ocr`: the engine that read the page ("rapidocr 3.10.0"), None
    when it had a text layer; `extra`: metadata a user attached to the file (see
    `spanqa.indexing.ingest.file_meta`). `page_count` is 0 for a passage of a caller's own (not indexed).
    """

    source: str
    file_type: str
    page: int
    page_count: int
    start: int
    end: int
    sha256: str | None = None
    pieces: list[list[int]] | None = None
    ocr: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_meta(self) -> dict[str, Any]:
        """The flat `Document.meta` (and the store's meta JSON) of this chunk."""
        meta: dict[str, Any] = {
            "source": self.source,
            "file_type": self.file_type,
            "page": self.page,
            "page_count": self.page_count,
            "start": self.start,
            "end": self.end,
            "sha256": self.sha256,
        }
        if self.pieces is not None:
            meta["pieces"] = self.pieces
        if self.ocr is not None:
            meta["ocr"] = self.ocr
        meta.update(self.extra)
        return meta

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> ChunkMeta:
        """The ChunkMeta of a chunk's `Document.meta`; keys outside the schema (and the retriever's
        `similarity`) are its `extra`. A meta without the place of a chunk is a ConfigError."""
        missing = [key for key in ("source", "page", "start", "end") if meta.get(key) is None]
        if missing:
            raise ConfigError(
                f"a chunk's meta lacks {', '.join(repr(key) for key in missing)} (it has {sorted(meta)}): "
                "chunks come from spanqa's indexing (DocumentQA.index, or PageConverter -> PageChunker)"
            )
        source = str(meta["source"])
        page_count = meta.get("page_count")
        pieces = meta.get("pieces")
        extra = {key: value for key, value in meta.items() if key not in RESERVED_KEYS}
        return cls(
            source=source,
            file_type=str(meta["file_type"]) if meta.get("file_type") is not None else file_type_of(source),
            page=_whole("page", meta["page"]),
            page_count=0 if page_count is None else _whole("page_count", page_count),
            start=_whole("start", meta["start"]),
            end=_whole("end", meta["end"]),
            sha256=None if meta.get("sha256") is None else str(meta["sha256"]),
            pieces=None if not pieces else [[int(clean), int(raw)] for clean, raw in pieces],
            ocr=None if meta.get("ocr") is None else str(meta["ocr"]),
            extra=extra,
        )


# The keys ChunkMeta writes itself, and those the retriever adds: no user metadata may use them.
RESERVED_KEYS = frozenset(
    name for name in ChunkMeta.__dataclass_fields__ if name != "extra"
) | frozenset(RETRIEVAL_KEYS)
