"""The indexing runs of `DocumentQA.index`: files found, parsed in worker processes while the
embedder loads, embedded and committed batch by batch, here or on a Ray cluster
(`spanqa.indexing.ingest.ray_run`), into the index a `QueryEngine` answers from; a new index is
created on the way, as its settings say."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanqa.devices import resolve_device
from spanqa.indexing import FaissDocumentStore, discover_files
from spanqa.indexing.ingest.file_meta import FileMeta
from spanqa.indexing.ingest.indexer import Ingest, IngestResult, chunk_settings_for
from spanqa.indexing.ingest.ray_ingest import RaySettings
from spanqa.indexing.ingest.ray_run import index_on_ray
from spanqa.indexing.retrieval.embedders import make_document_embedder, probe_dimension, warm_up_embedder
from spanqa.indexing.retrieval.embedding import EmbeddingSettings, choose_precision
from spanqa.indexing.store.faiss_store import StoredFile
from spanqa.indexing.store.shards import ShardedStore, index_exists
from spanqa.paths import indexed_under, user_path
from spanqa.pipelines.engine import QueryEngine
from spanqa.records import IndexReport
from spanqa.settings import OcrSettings, ParseSettings


@dataclass(frozen=True)
class IndexOptions:
    """What one indexing run is told besides its paths (see `DocumentQA.index`)."""

    parse: ParseSettings = field(default_factory=ParseSettings)
    ocr: OcrSettings = field(default_factory=OcrSettings)
    password: str | None = None
    passwords: Mapping[str, str] | None = None
    on_file_done: Callable[[str], None] | None = None
    sync: bool = False
    meta: FileMeta | None = None
    ray: RaySettings | None = None  # None: index on this machine (Ray is never imported)
    roots: Iterable[str | Path] | None = None  # None: the paths given
    duplicate_scope: Callable[[str], bool] | None = None


def index_paths(engine: QueryEngine, paths: list[str | Path], options: IndexOptions) -> IndexReport:
    """Indexes the files named by `paths` into `engine`'s index (created when there is none), as
    `DocumentQA.index` describes; the engine answers from the index written."""
    files, skipped = discover_files(paths)
    report = IndexReport(skipped=list(skipped))
    store = engine.store if index_exists(engine.index_dir) else None
    ingest = _ingest(engine, store, options)
    roots = [path for path in (paths if options.roots is None else options.roots) if user_path(path).exists()]
    if options.ray is not None:
        model = engine.new_index_embedder() if store is None else store.embedder
        result = index_on_ray(
            ingest, files, options.ray, engine.settings.device.device, model,
            lambda torch_device: _embedding_for(engine, store, model, torch_device),
            lambda embedding: create_store(engine, model, embedding, None),
        )
        store = ingest.store
        store.add_roots(roots)
    else:
        result, store = _index_here(engine, ingest, files, store, roots)
    if options.sync:
        with store.writer():
            report.removed = forget_missing(store, paths, {str(file) for file in files})
    report.indexed.extend(result.indexed)
    report.skipped.extend(result.skipped)
    report.chunk_count += result.chunk_count
    return report


def _ingest(engine: QueryEngine, store: Any, options: IndexOptions) -> Ingest:
    """The run's Ingest: chunked as the index records (a new one, by the reader's tokenizer)."""
    parse = options.parse
    return Ingest(
        store,
        None,
        chunk_settings_for(None if store is None else store.chunking, engine.settings.reader.reader),
        password=options.password,
        passwords=options.passwords,
        workers=parse.workers,
        timeout_s=parse.timeout_s,
        memory_mb=parse.memory_mb,
        max_file_mb=parse.max_file_mb,
        on_file_done=options.on_file_done,
        ocr=options.ocr.ocr,
        meta=options.meta,
        duplicate_scope=options.duplicate_scope,
    )


def _embedding_for(engine: QueryEngine, store: Any, model: str, torch_device: str) -> EmbeddingSettings:
    """How the index embeds: as it records, or (a new index) as the settings say on `torch_device`."""
    if store is not None:
        return EmbeddingSettings.from_dict(store.embedding)
    embedder = engine.settings.embedder
    precision = choose_precision(embedder.embedder_precision, model, torch_device)
    return EmbeddingSettings(precision=precision, max_tokens=embedder.embed_max_tokens)


def _index_here(
    engine: QueryEngine, ingest: Ingest, files: list[Path], store: Any, roots: list
) -> tuple[IngestResult, FaissDocumentStore | ShardedStore]:
    """The run on this machine: the workers parse while the embedder loads (and a new index is
    created); each embedded batch commits as it is stored, so an interrupted run keeps those before it."""
    torch_device = resolve_device(engine.settings.device.device)
    model = engine.new_index_embedder() if store is None else store.embedder
    embedding = _embedding_for(engine, store, model, torch_device)
    ingest.start(files)
    try:
        embedder = make_document_embedder(model, torch_device, embedding, engine.settings.embedder.embedder_batch_size)
        warm_up_embedder(embedder, model)
        if store is None:
            store = create_store(engine, model, embedding, probe_dimension(embedder))
        # Before the files: an interrupted run's committed files are shown relative to them too.
        store.add_roots(roots)
    except BaseException:
        ingest.abort()
        raise
    return ingest.finish(store, embedder), store


def create_store(
    engine: QueryEngine, model: str, embedding: EmbeddingSettings, dimension: int | None
) -> FaissDocumentStore | ShardedStore:
    """The engine's new index, for vectors of `dimension` (None: asked of the model, loaded here on
    the CPU), laid out as the store settings say; the engine answers from it."""
    if dimension is None:
        embedder = make_document_embedder(model, "cpu", embedding, engine.settings.embedder.embedder_batch_size)
        warm_up_embedder(embedder, model)
        dimension = probe_dimension(embedder)
    layout = engine.settings.store
    if layout.shards is not None and layout.shards > 1:
        store = ShardedStore.create(
            engine.index_dir, layout.shards, embedder=model, dimension=dimension, index_type=layout.index_type,
            embedding=embedding.to_dict(),
        )
    else:
        store = FaissDocumentStore.create(
            engine.index_dir, embedder=model, dimension=dimension, index_type=layout.index_type,
            embedding=embedding.to_dict(),
        )
    engine.adopt_store(store)
    return store


def stored_under(store: FaissDocumentStore | ShardedStore, paths: list) -> list[StoredFile]:
    """The indexed files named by `paths`: each file itself, or everything indexed under a folder."""
    return [stored for stored in store.files() if any(indexed_under(stored.source, path) for path in paths)]


def forget_missing(store: FaissDocumentStore | ShardedStore, paths: list, present: set[str]) -> list[str]:
    """Removes the indexed files under `paths` that are not in `present` (in the caller's writer block)."""
    removed = [stored.source for stored in stored_under(store, paths) if stored.source not in present]
    for source in removed:
        store.delete_by_source(source)
    return removed
