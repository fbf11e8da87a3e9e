"""The writers of `spanqa index --ray`: one Ray actor per shard of the index (one for an index that
is not sharded), each committing its shard's files on the node it is placed on.

The embedder actors send each embedded batch's files to the writers of their shards (`shard_of`
their path) and wait for the commits; the driver only gathers what each file became. So the
commits of N shards run on N nodes at once, and no chunk passes through the driver: on one index
the driver's commits bound a run (4,514 chunks/s measured, docs/measurements/ray.md).

Placement: shard k goes to the k-th node of the cluster's alive nodes, the driver's node first, and
round again when there are more shards than nodes; an index of one shard is written on the driver's
node. A writer commits each batch it is sent as `Ingest` commits one (its files' old chunks
replaced, the run's settings recorded, atomically), so a writer or node lost mid-run loses no
commit made before. A writer's process that dies is started again on its node and makes the commit
in progress again (a commit replaces its files' chunks: made twice, the same); a writer lost with
its node stops the run, and a re-run resumes, placing that shard's writer on a node still there.
The index folder must be at the same path on every node that holds a writer (a shared file system,
as for the files).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from spanqa import defaults
from spanqa.errors import ClusterError
from spanqa.indexing.ingest.indexer import chunk_documents, commit_files
from spanqa.indexing.ingest.parsing import ParsedFile
from spanqa.indexing.store.faiss_store import FaissDocumentStore
from spanqa.ray_cluster import short_error
from spanqa.records import IndexedFile

# (the parsed file, its chunks' vectors in order, the run's metadata for it)
FileToWrite = tuple[ParsedFile, np.ndarray, dict[str, Any]]

_CLOSE_TIMEOUT_S = 30.0
# A writer placed on a node the cluster lost is known dead once Ray's health checks miss it
# (seconds); a writer not started in this long is one that cannot start.
_START_TIMEOUT_S = 120.0


def writer_nodes(shard_count: int, alive_nodes: Sequence[str], driver_node: str) -> list[str]:
    """The node of each shard's writer: the alive nodes in turn, the driver's node first."""
    others = sorted(node for node in alive_nodes if node != driver_node)
    order = [driver_node, *others]
    return [order[number % len(order)] for number in range(shard_count)]


class ShardWriter:
    """A Ray actor committing the files sent to it into one shard (or the one index)."""

    def __init__(self, shard_dir: str, settings_record: dict[str, Any], ocr_label: str | None):
        self.store = FaissDocumentStore.open(shard_dir)
        self.settings_record = settings_record
        self.ocr_label = ocr_label

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def commit(self, files: list[FileToWrite]) -> list[IndexedFile]:
        """The files (each replacing its stored chunks) in one commit; what each became."""
        embedded = []
        for parsed, vectors, extra in files:
            documents, _ = chunk_documents(parsed, self.ocr_label, extra)
            embedded.append((parsed, [replace(document, embedding=row.tolist()) for document, row in zip(documents, vectors)]))
        return commit_files(self.store, self.settings_record, embedded)

    def close(self) -> None:
        self.store.close()


@dataclass
class ShardWriters:
    """The running writers of a run's shards, in shard order, and the node each runs on (as the
    writer itself answered when it started)."""

    ray: Any
    handles: list[Any]
    nodes: list[str]

    @classmethod
    def start(
        cls, ray: Any, shard_dirs: Sequence[Path], settings_record: dict[str, Any], ocr_label: str | None
    ) -> ShardWriters:
        """A writer per shard, placed by `writer_nodes`, each started and its shard open. A writer
        that cannot start (its node lost, though still listed alive) is placed again on a node
        whose writer started; one that cannot start there either stops the run (ClusterError)."""
        driver = ray.get_runtime_context().get_node_id()
        alive = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
        writers = cls(ray=ray, handles=[], nodes=writer_nodes(len(shard_dirs), alive, driver))
        writers.handles = [
            writers._writer(shard_dir, node, settings_record, ocr_label) for shard_dir, node in zip(shard_dirs, writers.nodes)
        ]
        failed = writers._ask_nodes()
        if failed:
            started = [node for number, node in enumerate(writers.nodes) if number not in failed]
            others = writer_nodes(len(shard_dirs), started if started else [driver], driver)
            for number in failed:
                writers.handles[number] = writers._writer(shard_dirs[number], others[number], settings_record, ocr_label)
            failed = writers._ask_nodes()
        if failed:
            number, error = next(iter(failed.items()))
            writers.stop()
            raise ClusterError(
                f"the writer of shard {number} cannot start on the Ray cluster: {error}. The index folder "
                f"'{shard_dirs[number]}' must be at the same path on every node (a shared file system)"
            )
        return writers

    def _writer(self, shard_dir: Path, node: str, settings_record: dict[str, Any], ocr_label: str | None) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # No CPUs reserved: a writer works in short commits between waits, and a reserved CPU would
        # be one parse task fewer on its node. Pinned to its node (soft affinity places actors
        # anywhere on Ray 2.60): a writer process that dies starts again there, one lost with its
        # node is lost.
        actor = self.ray.remote(
            num_cpus=0, max_restarts=defaults.RAY_WRITER_RESTARTS, max_task_retries=defaults.RAY_WRITER_RESTARTS
        )(ShardWriter)
        strategy = NodeAffinitySchedulingStrategy(node, soft=False)
        return actor.options(scheduling_strategy=strategy).remote(str(shard_dir), settings_record, ocr_label)

    def _ask_nodes(self) -> dict[int, str]:
        """Asks each writer its node and records it in `nodes`; the writers that could not start
        (their shard number), and why."""
        failed = {}
        for number, handle in enumerate(self.handles):
            try:
                self.nodes[number] = self.ray.get(handle.node_id.remote(), timeout=_START_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - any reason means the same here: place it elsewhere
                failed[number] = short_error(exc)
        return failed

    def stop(self) -> None:
        """Closes the writers' stores and ends them (a writer already lost is passed over)."""
        closing = [handle.close.remote() for handle in self.handles]
        self.ray.wait(closing, num_returns=len(closing), timeout=_CLOSE_TIMEOUT_S)
        for handle in self.handles:
            self.ray.kill(handle)
