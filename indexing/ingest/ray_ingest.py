"""Indexing on a Ray cluster (`spanqa index --ray`): the files of a run parsed by Ray tasks,
embedded by a pool of Ray actors and committed by the writers of the index's shards (`ray_writers`).

The driver plans the run as a local run does (`Ingest.plan`: files listed and hashed, unchanged
files kept, duplicates reported) and gathers what each file became (`Ingest.record_outcomes`).
In between, one Ray Data pipeline runs on the cluster:

- each file is a Ray task that runs `parse_file` in a `ParsePool` of one capped worker process, so
  a file has the time and memory budget it has locally and gets the same status (timed out, out of
  memory, parser crashed, or the parser's own reason);
- parsed files go in batches of `embed_batch_files` to an autoscaling pool of embedder actors
  (`ActorPoolStrategy`): one per GPU on a cluster with GPUs (float32), else CPU actors running the
  embedder the index records (int8 with ONNX Runtime, as locally); an actor sends each batch's
  files to their shards' writers and waits for the commits (one per shard, as locally per batch);
- Ray retries the tasks of a node that dies and restarts its actors; if the pipeline stops anyway
  the run ends with a ClusterError, and every batch committed before stays (a re-run resumes).

Paths (the files, the models, the reader's tokenizer) must name the same things on every node (a
shared file system): the driver hashes the files where it runs, the tasks read them where they run.
Ray is imported by the functions here only, and only when a run asks for it. Written for Ray 2.60:
`map_batches(compute=ActorPoolStrategy(...))` (2.60 deprecates `concurrency=` again) and no
`**ray_remote_args` (deprecated, to be removed in 2.64), so Ray's own retry defaults apply.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from spanqa import defaults
from spanqa.errors import ClusterError, ConfigError, SpanQAError, check_positive_int
from spanqa.indexing.ingest.parsing import ParsedFile, ParseTask, parse_file
from spanqa.indexing.ingest.workers import ParsePool
from spanqa.ray_cluster import short_error
from spanqa.records import IndexedFile, SkippedFile

if TYPE_CHECKING:
    # Not at run time: the parse tasks import this module in every Ray worker, and the embedding
    # module brings Haystack (1.5 s of imports per worker process; the embedder actors import it anyway).
    from spanqa.indexing.retrieval.embedding import EmbeddingSettings

LOCAL = "local"


@dataclass(frozen=True)
class RaySettings:
    """Where a run's Ray work goes and how it is sized. `address` None: the local Ray instance
    (attached to when one runs, else started for the run); else a cluster address ('HOST:6379',
    'auto', 'ray://HOST:10001')."""

    address: str | None = None
    embed_batch_files: int = defaults.RAY_EMBED_BATCH_FILES
    embed_actor_cpus: int = defaults.RAY_EMBED_ACTOR_CPUS
    max_embed_actors: int | None = None  # None: sized to the cluster (one per GPU, or a share of its CPUs)

    def __post_init__(self) -> None:
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise ConfigError(f"ray address {self.address!r} must be a non-empty string such as 'HOST:6379'")
        check_positive_int("embed_batch_files", self.embed_batch_files)
        check_positive_int("embed_actor_cpus", self.embed_actor_cpus)
        if self.max_embed_actors is not None:
            check_positive_int("max_embed_actors", self.max_embed_actors)

    @classmethod
    def from_option(cls, ray: bool | str | RaySettings | None) -> RaySettings | None:
        """The `ray=` of `DocumentQA.index`: None or False (index here), True or 'local' (a local
        Ray instance), an address, or RaySettings."""
        if ray is None or ray is False:
            return None
        if isinstance(ray, RaySettings):
            return ray
        if ray is True or ray == LOCAL:
            return cls()
        if isinstance(ray, str) and ray.strip():
            return cls(address=ray.strip())
        raise ConfigError(
            f"ray={ray!r}: give None (index on this machine), True or 'local' (a local Ray instance), "
            "or the address of a Ray cluster such as 'HOST:6379'"
        )


@dataclass(frozen=True)
class ParseLimits:
    """A ParsePool's per-file budget and job, carried to the cluster's parse tasks."""

    timeout_s: float | None
    memory_mb: int | None
    ocr_page_s: float
    job: Callable[..., ParsedFile] = parse_file

    @classmethod
    def of(cls, pool: ParsePool) -> ParseLimits:
        return cls(timeout_s=pool.timeout_s, memory_mb=pool.memory_mb, ocr_page_s=pool.ocr_page_s, job=pool.job)

    def parse(self, task: ParseTask) -> ParsedFile:
        """The file parsed in a capped parser process, exactly as a local pool parses it. The Ray
        worker process keeps its parser process for the files it parses next (a new one per file
        cost 13% more parse time on the shared PDFs: imports and OCR models loaded again)."""
        pool = _PARSE_POOLS.get(self)
        if pool is None:
            pool = ParsePool(workers=1, timeout_s=self.timeout_s, memory_mb=self.memory_mb, job=self.job,
                             ocr_page_s=self.ocr_page_s, keep_workers=True)
            _PARSE_POOLS[self] = pool
        return pool.map([task])[0]


# The parse pools of this process (a Ray worker's), by their limits: Ray runs one task at a time in
# a worker process, and its parser process ends with it (the pipe to it closes).
_PARSE_POOLS: dict[ParseLimits, ParsePool] = {}


@dataclass(frozen=True)
class EmbedderPlan:
    """Which embedder the actors load, where, and how many of them there may be."""

    model: str
    embedding: EmbeddingSettings
    gpu: bool
    actor_cpus: int
    max_actors: int

    @classmethod
    def sized(
        cls, model: str, embedding: EmbeddingSettings, resources: Mapping[str, float], gpus: bool, settings: RaySettings
    ) -> EmbedderPlan:
        """One actor per GPU when the cluster's GPUs embed (float32); else CPU actors of
        `embed_actor_cpus` CPUs taking at most RAY_EMBED_CPU_SHARE of the cluster's CPUs, so the
        parse tasks keep the rest (an actor of fewer CPUs on a small cluster)."""
        if gpus and embedding.precision == "float32":
            actor_cpus, most = 1, max(1, int(resources.get("GPU", 0)))
        else:
            gpus = False
            share = max(1, int(resources.get("CPU", 1) * defaults.RAY_EMBED_CPU_SHARE))
            actor_cpus = min(settings.embed_actor_cpus, share)
            most = max(1, share // actor_cpus)
        if settings.max_embed_actors is not None:
            most = min(most, settings.max_embed_actors)
        return cls(model=model, embedding=embedding, gpu=gpus, actor_cpus=actor_cpus, max_actors=most)


def _parse_row(row: dict[str, Any], limits: ParseLimits) -> list[dict[str, Any]]:
    task: ParseTask = pickle.loads(row["task"])
    try:
        parsed = limits.parse(task)
    except Exception as exc:  # noqa: BLE001 - the pool itself failed: this file's status, not the run's end
        parsed = ParsedFile(path=task.path, reason=f"cannot parse: {type(exc).__name__}: {exc}"[:200])
    return [{"parsed": pickle.dumps(parsed), "extra": row["extra"]}]


class ChunkEmbedderActor:
    """A Ray actor embedding the chunks of a batch of parsed files (what `Ingest._flush` embeds) and
    having them committed by their shards' writers; it returns what each file became."""

    def __init__(self, plan: EmbedderPlan, writers: list[Any]):
        self.writers = writers
        if not plan.gpu:
            import torch

            # The int8 embedder runs as many threads as torch: the CPUs Ray gave this actor.
            torch.set_num_threads(plan.actor_cpus)
        # Here, not at the top: the parse tasks import this module in every Ray worker, and the
        # embedders bring Haystack and sentence-transformers (the actors need them, the tasks do not).
        from spanqa.indexing.retrieval.embedders import make_document_embedder, warm_up_embedder

        # Ray shows an actor its own GPU as device 0.
        self.embedder = make_document_embedder(plan.model, "cuda:0" if plan.gpu else "cpu", plan.embedding)
        warm_up_embedder(self.embedder, plan.model)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        files: list[ParsedFile] = [pickle.loads(item) for item in batch["parsed"]]
        parsed_ok = [parsed for parsed in files if parsed.ok]
        extras = [pickle.loads(extra) for extra, parsed in zip(batch["extra"], files) if parsed.ok]
        try:
            vectors = self._embed(parsed_ok)
        except Exception as exc:  # noqa: BLE001 - the driver stops the run with this message
            return self._failed(files, f"the embedder failed: {short_error(exc)}")
        try:
            indexed = iter(self._commit(parsed_ok, vectors, extras))
        except Exception as exc:  # noqa: BLE001 - a writer (or its node) lost: the driver stops the run with this message
            return self._failed(files, f"a shard writer failed: {short_error(exc)}")
        outcomes = [next(indexed) if parsed.ok else SkippedFile(parsed.path, str(parsed.reason)) for parsed in files]
        return {"outcome": [pickle.dumps(outcome) for outcome in outcomes], "error": [""] * len(files)}

    def _commit(self, files: list[ParsedFile], vectors: list[np.ndarray], extras: list[dict[str, Any]]) -> list[IndexedFile]:
        """The files committed by the writers of their shards (one commit per shard, all at once);
        what each file became, in order."""
        import ray

        # Here, not at the top: the store brings Haystack and FAISS, which the parse tasks never need.
        from spanqa.indexing.store.shards import shard_of

        by_shard: dict[int, list[int]] = {}
        for position, parsed in enumerate(files):
            by_shard.setdefault(shard_of(parsed.path, len(self.writers)), []).append(position)
        commits = [
            self.writers[shard].commit.remote([(files[at], vectors[at], extras[at]) for at in positions])
            for shard, positions in by_shard.items()
        ]
        indexed: dict[int, IndexedFile] = {}
        for positions, outcomes in zip(by_shard.values(), ray.get(commits)):
            indexed.update(zip(positions, outcomes))
        return [indexed[at] for at in range(len(files))]

    def _embed(self, files: list[ParsedFile]) -> list[np.ndarray]:
        """The vectors of each file's chunks (a file without chunks has none)."""
        from haystack import Document

        texts = [chunk.embed_text for parsed in files for chunk in parsed.chunks]
        if not texts:
            return [np.zeros((0, 0), dtype=np.float32) for _ in files]
        embedded = self.embedder.run(documents=[Document(content=text) for text in texts])["documents"]
        matrix = np.asarray([document.embedding for document in embedded], dtype=np.float32)
        vectors, start = [], 0
        for parsed in files:
            vectors.append(matrix[start : start + len(parsed.chunks)])
            start += len(parsed.chunks)
        return vectors

    @staticmethod
    def _failed(files: list[ParsedFile], error: str) -> dict[str, list]:
        return {"outcome": [b""] * len(files), "error": [error] * len(files)}


def _outcomes_of(batch: Mapping[str, np.ndarray]) -> list[IndexedFile | SkippedFile]:
    outcomes = []
    for outcome, error in zip(batch["outcome"], batch["error"]):
        if error:
            raise ClusterError(
                f"indexing on the Ray cluster stopped: {error}. What was committed stays in the index; "
                "run the same command again to index the rest (unchanged files are skipped)"
            )
        outcomes.append(pickle.loads(outcome))
    return outcomes


def indexed_batches(
    tasks: list[ParseTask],
    extras: Mapping[str, dict[str, Any]],
    limits: ParseLimits,
    plan: EmbedderPlan,
    settings: RaySettings,
    writers: list[Any],
) -> Iterator[list[IndexedFile | SkippedFile]]:
    """What each file became (indexed, or skipped and why), in batches as the cluster commits them;
    `extras` holds the run's metadata of each file, `writers` the shards' writers in shard order."""
    if not tasks:
        return
    import ray.data
    from ray.data import ActorPoolStrategy

    rows = [{"task": pickle.dumps(task), "extra": pickle.dumps(extras[task.path])} for task in tasks]
    # One file per block: each file is a task of its own, spread over the cluster and retried alone.
    files = ray.data.from_items(rows, override_num_blocks=len(rows))
    # flat_map, not map_batches: Ray Data 2.60 fuses a task map into a following actor map of equal
    # resources (parsing would then run inside the embedder actors), except after a map that may
    # change the number of rows, before a map with a batch size.
    parsed = files.flat_map(_parse_row, fn_kwargs={"limits": limits}, num_cpus=1)
    embedded = parsed.map_batches(
        ChunkEmbedderActor,
        fn_constructor_kwargs={"plan": plan, "writers": writers},
        batch_size=settings.embed_batch_files,
        compute=ActorPoolStrategy(min_size=1, max_size=plan.max_actors),
        num_cpus=plan.actor_cpus,
        num_gpus=1 if plan.gpu else None,
    )
    context = embedded.context
    context.enable_progress_bars = False  # the command line shows its own progress, per file
    # Each file's own time budget bounds its task; an OCR-heavy file may take longer than Ray Data's
    # default 30 minutes without output.
    context.execution_no_progress_timeout_s = -1
    context.max_consecutive_actor_init_deaths = defaults.RAY_ACTOR_INIT_DEATHS
    batches = iter(embedded.iter_batches(batch_size=None, batch_format="numpy"))
    try:
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except SpanQAError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever stopped the pipeline, the run ends the same way
                raise ClusterError(
                    f"indexing on the Ray cluster stopped: {short_error(exc)}. What was committed stays in the index; "
                    "run the same command again to index the rest (unchanged files are skipped)"
                ) from exc
            yield _outcomes_of(batch)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
