"""Files in, page Documents out: the Haystack component over the reading step `spanqa index` runs
(`parsing.read_file`), with the same settings, so `PageConverter -> PageChunker` yields its chunks.

A page Document's content is the page text exactly as `read_pages` returns it: the text every later
offset (chunk `start`/`end`, answer `start`/`end`) points into.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from haystack import Document, component, default_to_dict

from spanqa.chunk_meta import ChunkMeta, file_type_of
from spanqa.errors import ConfigError
from spanqa.indexing.ingest.file_meta import check_meta
from spanqa.indexing.ingest.parsing import failure_reason, password_candidates, read_file
from spanqa.indexing.ocr.engines import engine_label
from spanqa.paths import user_path
from spanqa.records import SkippedFile
from spanqa.settings import ChunkingSettings, OcrSettings, ParseSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadSettings:
    """How files are read, as `DocumentQA.index` reads them (`layout`: an index's chunking
    manifest records it; `ocr`, `max_file_mb`, `password`, `passwords`: the `index` options)."""

    layout: bool = ChunkingSettings.layout_reading_order
    ocr: str = OcrSettings.ocr
    max_file_mb: float | None = ParseSettings.max_file_mb
    password: str | None = None
    # Per-file passwords keyed by file name, trailing path or absolute path (tried before `password`).
    passwords: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Each value passes the check of the setting it is (declared in spanqa.settings).
        ChunkingSettings(layout_reading_order=self.layout)
        OcrSettings(ocr=self.ocr)
        ParseSettings(max_file_mb=self.max_file_mb)

    @property
    def max_file_bytes(self) -> int | None:
        """`max_file_mb` in bytes; None for no limit."""
        return None if self.max_file_mb is None else int(self.max_file_mb * 1024 * 1024)


@component
class PageConverter:
    """Turns files into one Document per page that has text; files that cannot be read are reported
    in `skipped` with the reason, never raised.

    Each Document's content is the page's text, its meta a `ChunkMeta` spanning the whole page
    (`start` 0, `end` its length) with the file's SHA-256, the OCR engine on OCR'd pages, and the
    metadata given for the file (`meta`: one dict for every source, or one per source).
    """

    def __init__(self, settings: ReadSettings | None = None):
        self.settings = ReadSettings() if settings is None else settings
        if not isinstance(self.settings, ReadSettings):
            raise ConfigError(f"PageConverter takes ReadSettings, got {settings!r}")
        # Recorded on each OCR'd page, as `spanqa index` records it on each OCR'd chunk.
        self.ocr_label = engine_label(self.settings.ocr)

    def to_dict(self) -> dict[str, Any]:
        """The converter as a Haystack pipeline stores it: its ReadSettings."""
        return default_to_dict(self, settings=asdict(self.settings))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PageConverter:
        """The converter `to_dict` describes."""
        settings = data.get("init_parameters", {}).get("settings")
        return cls(None if settings is None else ReadSettings(**settings))

    @component.output_types(documents=list[Document], skipped=list[SkippedFile])
    def run(
        self, sources: list[str | Path], meta: Mapping[str, Any] | list[Mapping[str, Any]] | None = None
    ) -> dict[str, Any]:
        """`documents`: one Document per page with text of each of `sources`; `skipped`: the files
        that could not be read, with the reason. `meta` is one dict for every source, or one per source."""
        metas = self._metas(sources, meta)
        documents: list[Document] = []
        skipped: list[SkippedFile] = []
        for source, extra in zip(sources, metas):
            path = user_path(source)
            try:
                text = read_file(
                    path,
                    passwords=password_candidates(path, self.settings.password, self.settings.passwords),
                    layout=self.settings.layout,
                    ocr=self.settings.ocr,
                    max_file_bytes=self.settings.max_file_bytes,
                )
            except Exception as exc:  # noqa: BLE001 - one unreadable file is reported, the rest converted
                reason = failure_reason(exc)
                logger.info("skipped %s: %s", path, reason)
                skipped.append(SkippedFile(str(path), reason))
                continue
            for number, page_text in enumerate(text.pages, start=1):
                if page_text.strip() == "":
                    continue
                page = ChunkMeta(
                    source=str(path), file_type=file_type_of(path), page=number, page_count=len(text.pages),
                    start=0, end=len(page_text), sha256=text.sha256,
                    ocr=self.ocr_label if number in text.ocr_pages else None, extra=extra,
                )
                documents.append(Document(content=page_text, meta=page.to_meta()))
        return {"documents": documents, "skipped": skipped}

    @staticmethod
    def _metas(sources: list[str | Path], meta: Any) -> list[dict[str, Any]]:
        if meta is None:
            return [{} for _ in sources]
        if isinstance(meta, list):
            if len(meta) != len(sources):
                raise ConfigError(
                    f"PageConverter got {len(meta)} meta dicts for {len(sources)} sources: give one per source, "
                    "or one dict for all"
                )
            return [check_meta(item, f"metadata of {source}") for source, item in zip(sources, meta)]
        checked = check_meta(meta)
        return [dict(checked) for _ in sources]
