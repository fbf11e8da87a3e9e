"""The Python API: DocumentQA indexes files into a directory and answers questions from it.

Its settings are `spanqa.settings.QASettings` (listed with their defaults in
docs/reference/settings.md); it answers through `spanqa.pipelines.engine.QueryEngine`, the engine
of the service and Ray Serve too, and indexes through `spanqa.pipelines.indexing`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from haystack import Document

from spanqa.chunk_meta import ChunkMeta, file_type_of
from spanqa.errors import ChunkNotFoundError, ConfigError, check_positive_int
from spanqa.indexing.ingest.file_meta import FileMeta
from spanqa.indexing.ingest.ray_ingest import RaySettings
from spanqa.indexing.retrieval.hybrid import with_similarity
from spanqa.indexing.store.commits import CommitReport
from spanqa.indexing.store.faiss_store import StoredFile
from spanqa.indexing.store.filters import filter_sql
from spanqa.pipelines.documents import answer_from_extracted, passage_from_document, reranked_meta
from spanqa.pipelines.engine import QueryEngine
from spanqa.pipelines.indexing import IndexOptions, index_paths, stored_under
from spanqa.reader.calibration import CALIBRATION_FILE
from spanqa.records import Answer, IndexReport, Passage
from spanqa.settings import OcrSettings, ParseSettings, QASettings


def _check_text(text: str, what: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"the {what} is empty: give a non-empty {what}")
    return text


def _check_filters(filters: dict[str, Any] | None) -> dict[str, Any] | None:
    if filters is not None:
        filter_sql(filters)  # raises ConfigError naming what is wrong
    return filters


def _top_k(top_k: int | None, default: int) -> int:
    return default if top_k is None else check_positive_int("top_k", top_k)


class DocumentQA:
    """Index documents into `index_dir` and answer questions by quoting them.

        >>> qa = DocumentQA("kb/")
        >>> report = qa.index(["handbook.pdf", "notes/"])
        >>> answers = qa.ask("When was the company founded?", top_k=5)

    Settings are given as keywords named after them (`reader=`, `device=`, `retriever_top_k=`,
    `fast_reader=`, `score_threshold=`, `retrieval=`, `embedder=`, `index_type=`, `shards=`, ...),
    or as `settings=` (a `spanqa.settings.QASettings`, which the keywords then change): every one,
    its default and what it does is listed in docs/reference/settings.md, declared in
    `spanqa.settings`. An unknown keyword, or a value a setting cannot take, is a ConfigError here.

    The embedder that builds an index is recorded in it and used again for every question;
    naming a different one is an IndexMismatchError rather than silently wrong results. An
    existing index also keeps its vector index type and shard count (naming another shard count
    is a ConfigError).
    """

    def __init__(self, index_dir: str | os.PathLike[str], *, settings: QASettings | None = None, **keywords: Any):
        """
        :param index_dir: the index directory (`~` and relative paths allowed); `index` creates it when missing.
        :param settings: the settings, by component; None: the defaults.
        :param keywords: settings by name, over `settings` (see docs/reference/settings.md).
        """
        if settings is None:
            settings = QASettings.from_keywords(**keywords)
        elif keywords:
            settings = settings.replace(**keywords)
        self.engine = QueryEngine(index_dir, settings)

    @property
    def index_dir(self) -> Path:
        """The index directory, absolute."""
        return self.engine.index_dir

    @property
    def settings(self) -> QASettings:
        """The settings this DocumentQA answers with (model directories as absolute paths)."""
        return self.engine.settings

    @property
    def reader_model(self) -> str:
        """The reader model: a hub id, or the absolute path of a local directory."""
        return self.settings.reader.reader

    @property
    def rank_weight(self) -> float:
        """How much a passage's retrieval rank counts against its answers (`rank_weight=`)."""
        return self.settings.reader.rank_weight

    @property
    def calibration_path(self) -> Path:
        """Where `calibrate` stores the index's answer calibration."""
        return self.index_dir / CALIBRATION_FILE

    # -- the index ---------------------------------------------------------------------------

    def index(
        self,
        paths: str | Path | Iterable[str | Path],
        *,
        password: str | None = None,
        passwords: Mapping[str, str] | None = None,
        on_file_done: Callable[[str], None] | None = None,
        workers: int | None = ParseSettings.workers,
        timeout_s: float | None = ParseSettings.timeout_s,
        memory_mb: int | None = ParseSettings.memory_mb,
        max_file_mb: float | None = ParseSettings.max_file_mb,
        sync: bool = False,
        ocr: str = OcrSettings.ocr,
        meta: FileMeta | None = None,
        ray: bool | str | RaySettings | None = None,
        roots: Iterable[str | Path] | None = None,
        duplicate_scope: Callable[[str], bool] | None = None,
    ) -> IndexReport:
        """Index files and folders (recursively). A file that cannot be indexed is reported, never fatal.

        Files are parsed in `workers` processes (each file within `timeout_s` seconds and `memory_mb`
        MiB) while the embedder runs. Encrypted PDFs are tried with the empty password, then their
        entry in `passwords` (keyed by path or file name), then `password`. Chunks are sized in tokens
        of the reader's tokenizer (recorded in the index; see docs/concepts/pipeline.md, "Chunks").

        Files are tracked by path and SHA-256: an unchanged file is kept as it is, a changed one is
        indexed again. With `sync=True` the index also forgets every indexed file under `paths`
        that is no longer there (`IndexReport.removed`). Each embedded batch of files is committed as
        it is stored (one commit costs what it changes); an interrupted run keeps what was committed.
        PDF pages without a usable text layer are OCR'd by `ocr` ("auto": the built-in RapidOCR;
        "rapidocr", "tesseract", "off"); a file OCR'd by another engine before is OCR'd again.

        `meta` is metadata attached to every chunk of a file, filterable as `meta.KEY` in `search`
        and `ask`: one dict for every file of the run (`{"department": "hr", "tag": ["policy"]}`),
        or a function of the file's path returning its dict. Keys are names (letters, digits, `_`,
        `-`) other than spanqa's own chunk keys, values JSON scalars or lists of them. An unchanged
        file whose metadata changed is indexed again.

        `workers`, `timeout_s`, `memory_mb` and `max_file_mb` are the settings of
        `spanqa.settings.ParseSettings`, `ocr` that of `OcrSettings` (docs/reference/settings.md).

        `ray` indexes on a Ray cluster (needs `pip install 'spanqa[ray]'`): True or "local" for
        the local Ray instance (started for the run when none runs), an address ("HOST:6379") for
        a cluster, or `spanqa.indexing.ingest.ray_ingest.RaySettings`. Files are listed and hashed here,
        parsed by Ray tasks (same limits and statuses), embedded by Ray actors (one per GPU where
        the cluster has GPUs) and committed in the same atomic batches by one writer per shard, the
        shards spread over the cluster's nodes (the index folder must then be on storage those nodes
        share); `device` names where the actors embed. None (the default) indexes on this machine
        and never imports Ray.

        The paths given (those that exist) are recorded in the index as its roots (`store.roots()`),
        or `roots` instead when given: a service shows each indexed file relative to the root it
        lies under, never by its absolute path. `duplicate_scope(source)` says which indexed files
        count when a file's content is found indexed under another path (None: every one; a service
        passes the submitting token's scope, so a copy of a file it cannot see is indexed as its own).
        """
        options = IndexOptions(
            parse=ParseSettings(workers=workers, timeout_s=timeout_s, memory_mb=memory_mb, max_file_mb=max_file_mb),
            ocr=OcrSettings(ocr=ocr), password=password, passwords=passwords, on_file_done=on_file_done,
            sync=sync, meta=meta, ray=RaySettings.from_option(ray), roots=roots, duplicate_scope=duplicate_scope,
        )
        return index_paths(self.engine, [paths] if isinstance(paths, (str, Path)) else list(paths), options)

    def remove(self, paths: str | Path | Iterable[str | Path]) -> list[StoredFile]:
        """Removes from the index every file named by `paths` (a file, or everything indexed under a
        folder) with all its chunks, in one commit; returns the files removed."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        store = self.engine.store
        removed = stored_under(store, list(paths))
        with store.writer():
            for stored in removed:
                store.delete_by_source(stored.source)
        return removed

    def compact(self) -> CommitReport:
        """Rewrites the index's vectors as one segment without the deleted ones (as a fresh build
        lays them out), in one crash-safe commit; returns what it wrote. Commits merge segments by
        size on their own: this is for after large removals, or before copying an index."""
        return self.engine.store.compact()

    def files(self) -> list[StoredFile]:
        """The indexed files with their pages, chunks, SHA-256 and when they were indexed (UTC)."""
        return self.engine.store.files()

    # -- questions ---------------------------------------------------------------------------

    def search(self, query: str, top_k: int | None = None, filters: dict[str, Any] | None = None) -> list[Passage]:
        """The passages most similar to `query`, best first, without reading them: `top_k` of them
        (None: the `search_top_k` setting) whenever that many match.

        `filters` (Haystack filter syntax, e.g. `{"field": "meta.page", "operator": "==", "value": 3}`)
        restrict the search to matching chunks.
        """
        _check_text(query, "query")
        top_k = _top_k(top_k, self.settings.retrieval.search_top_k)
        _check_filters(filters)
        return [passage_from_document(document) for document in self.engine.retrieve(query, top_k, filters)]

    def ask(self, question: str, top_k: int | None = None, filters: dict[str, Any] | None = None) -> list[Answer]:
        """Answer spans quoted from the indexed documents, best first (at most `top_k`; None: the
        `answer_top_k` setting), read from the `retriever_top_k` best passages; `filters` as in
        `search` restrict the passages read."""
        _check_text(question, "question")
        top_k = _top_k(top_k, self.settings.reader.answer_top_k)
        _check_filters(filters)
        documents = self.engine.retrieve(question, self.settings.retrieval.retriever_top_k, filters)
        answers = self.engine.read(question, documents, top_k, self.settings.reader.score_threshold)
        return [answer_from_extracted(answer) for answer in answers]

    def read(self, question: str, passages: Sequence[Passage], top_k: int | None = None) -> list[Answer]:
        """Answer spans quoted from the given passages only, best first (at most `top_k`; None: the
        `answer_top_k` setting).

        Passages from `search` keep their place in the index, so answers carry exact page offsets;
        a passage whose chunk is no longer in the index (its file was indexed again, changed or
        removed since) is a ChunkNotFoundError: search again. A Passage of your own (no `chunk_id`)
        is read as it is, and an answer's offsets are its `start` plus the answer's position in its
        text. No index is needed for passages of your own.
        """
        _check_text(question, "question")
        top_k = _top_k(top_k, self.settings.reader.answer_top_k)
        answers = self.engine.read(question, self._documents_of(passages), top_k, self.settings.reader.score_threshold)
        return [answer_from_extracted(answer) for answer in answers]

    def read_prefixes(
        self, question: str, passages: Sequence[Passage], counts: Sequence[int], top_k: int | None = None,
        rank_weights: Sequence[float] | None = None,
    ) -> dict[tuple[int, float], list[Answer]]:
        """`read(question, passages[:count], top_k)` for each count and each rank weight (None: this
        DocumentQA's), keyed (count, rank weight), reading the passages once (the reader's spans of
        one passage do not depend on the others): how `spanqa eval` compares passages read and rankings."""
        _check_text(question, "question")
        top_k = _top_k(top_k, self.settings.reader.answer_top_k)
        answers = self.engine.read_prefixes(
            question, self._documents_of(passages), list(counts), top_k,
            None if rank_weights is None else list(rank_weights),
        )
        return {key: [answer_from_extracted(a) for a in found] for key, found in answers.items()}

    def _documents_of(self, passages: Sequence[Passage]) -> list[Document]:
        if not all(isinstance(passage, Passage) for passage in passages):
            raise ConfigError("read() takes a list of Passage records (from search(), or Passage(text=..., ...))")
        indexed = {}
        chunk_ids = [passage.chunk_id for passage in passages if passage.chunk_id is not None]
        if chunk_ids:
            stored = self.engine.store.filter_documents({"field": "id", "operator": "in", "value": chunk_ids})
            indexed = {document.id: document for document in stored}
            # A chunk's offsets hold for its own text only: a passage whose chunk is gone cannot be
            # placed on its page, and reading its text as if it were the page text would misplace answers.
            gone = [identifier for identifier in dict.fromkeys(chunk_ids) if identifier not in indexed]
            if gone:
                raise ChunkNotFoundError(gone, self.index_dir)
        documents = []
        for passage in passages:
            if passage.chunk_id is not None:
                document = indexed[passage.chunk_id]
            else:
                meta = ChunkMeta(
                    source=passage.source, file_type=file_type_of(passage.source), page=passage.page, page_count=0,
                    start=passage.start, end=passage.end,
                )
                document = Document(content=passage.text, meta=meta.to_meta())
            # what the retriever measured, for the answer calibration; a reranked passage's scores, for its prior
            document = with_similarity(document, passage.similarity)
            reranked = reranked_meta(passage)
            if reranked:
                document = replace(document, meta={**document.meta, **reranked})
            documents.append(document)
        return documents
