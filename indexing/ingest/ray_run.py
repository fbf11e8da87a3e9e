"""One indexing run on a Ray cluster (`DocumentQA.index(ray=...)`): the driver plans the run as a
local run does (`Ingest.plan`), the cluster parses, embeds and commits (`ray_ingest`: Ray tasks and
embedder actors; `ray_writers`: one writer per shard), and the driver gathers what each file became
(`Ingest.record_outcomes`). Ray itself is imported by `ray_connection`, only when a run asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from spanqa.indexing.ingest.indexer import Ingest, IngestResult
from spanqa.indexing.ingest.ray_ingest import EmbedderPlan, ParseLimits, RaySettings, indexed_batches
from spanqa.indexing.ingest.ray_writers import ShardWriters
from spanqa.indexing.retrieval.embedding import EmbeddingSettings
from spanqa.indexing.store.shards import ShardedStore
from spanqa.ray_cluster import ray_connection, uses_gpus


def index_on_ray(
    ingest: Ingest,
    files: list[Path],
    settings: RaySettings,
    device: str,
    model: str,
    embedding_for: Callable[[str], EmbeddingSettings],
    create_store: Callable[[EmbeddingSettings], Any],
) -> IngestResult:
    """Steps 2 to 4 of `ingest` for `files` on the Ray cluster `settings` names, with the embedder
    `model` on the cluster's GPUs where `device` lets them embed. `embedding_for(torch_device)` is
    how the index embeds (its recorded settings, or those a new index gets where its embedder runs);
    `create_store(embedding)` makes the index when `ingest.store` is None (a new index), before the
    writers open it."""
    with ray_connection(settings.address, "indexing") as ray_module:
        resources = ray_module.cluster_resources()
        gpus = uses_gpus(device, resources)
        embedding = embedding_for("cuda" if gpus else "cpu")
        plan = EmbedderPlan.sized(model, embedding, resources, gpus, settings)
        tasks = ingest.plan(files)
        if ingest.store is None:
            ingest.store = create_store(embedding)
        store = ingest.store
        shard_dirs = [shard.index_dir for shard in store.shards] if isinstance(store, ShardedStore) else [store.index_dir]
        writers = ShardWriters.start(ray_module, shard_dirs, ingest.settings_record(), ingest.ocr_label)
        try:
            extras = {task.path: ingest.extra_of(task.path) for task in tasks}
            batches = indexed_batches(tasks, extras, ParseLimits.of(ingest.pool), plan, settings, writers.handles)
            return ingest.record_outcomes(batches)
        finally:
            writers.stop()
