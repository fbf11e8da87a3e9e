"""What a change costs in a large index, and how search holds up as segments pile up (issue #14).

    .venv/bin/python bench/store_changes.py --size 1000000 --work /tmp/store-changes
    .venv/bin/python bench/store_changes.py --size 1000000 --code /tmp/old-spanqa --label before

One run builds an index of `--size` vectors (`bench/store.py`'s `documents` data, metadata with a
`department` that 1% of the chunks share, index type `auto`: IVF at this size) in one commit, then,
in a fresh process that opens it:

- open: seconds to open the index;
- add: one file of 100 chunks written and committed: seconds, and bytes written to files other than
  the SQLite database (new or rewritten files in the index folder);
- remove: that file deleted and committed, likewise;
- filter: ms per query (median of 50, one FAISS thread) of `search(top_k=10)` restricted to
  `meta.department == "dept7"` (1% of the chunks), and whether every answer held 10;
- segments: query ms (median of 200) and recall@10 against exact search over the live vectors with 1
  segment, after 3 and after 15 more commits of 2,000 chunks each (4 and 16 segments; merging off,
  so the segments stay), then after `compact()` (seconds to compact too).

`--code DIR` runs the phases with the spanqa found in DIR (a folder holding a `spanqa` checkout, e.g.
`git worktree add /tmp/old-spanqa/spanqa REV`): the "before" side of the table. A store without
segments commits with `save()`, and its segment rows are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from store import (
    DIMENSION,
    chunks_of,
    content_for,
    document_centres,
    meta_for,
    queries_for,
    vectors_for,
)

BATCH = 10_000
ADDED_FILE_CHUNKS = 100
SEGMENT_CHUNKS = 2_000
QUERIES = 200
FILTER_QUERIES = 50


def bench_meta(index: int) -> dict:
    return {**meta_for(index), "department": f"dept{index % 100}"}


def new_vectors(size: int, count: int, seed: int) -> np.ndarray:
    """Chunks of random existing documents, like the data set's own."""
    documents = document_centres(size)
    owners = np.random.default_rng(seed).integers(0, len(documents), count)
    return chunks_of(documents, owners, seed + 1)


def documents_for(vectors: np.ndarray, first: int, source: str | None = None) -> list:
    from haystack import Document

    return [
        Document(id=f"doc-{first + row}", content=content_for(first + row),
                 meta={**bench_meta(first + row), **({} if source is None else {"source": source})},
                 embedding=vectors[row].tolist())
        for row in range(len(vectors))
    ]


def committed(store, write) -> None:
    """Runs `write(store)` as one commit, with whichever API the store has."""
    if hasattr(store, "writer"):
        with store.writer():
            write(store)
    else:
        write(store)
        store.save()


def folder_files(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        path.name: (path.stat().st_size, path.stat().st_mtime_ns)
        for path in directory.iterdir()
        if path.is_file() and not path.name.startswith("chunks.sqlite")
    }


def bytes_written(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> int:
    return sum(size for name, (size, mtime) in after.items() if before.get(name) != (size, mtime))


def timed_commit(store, directory: Path, write) -> tuple[float, int]:
    before = folder_files(directory)
    started = time.perf_counter()
    committed(store, write)
    return time.perf_counter() - started, bytes_written(before, folder_files(directory))


def phase_build(size: int, directory: Path) -> dict:
    from spanqa.indexing.store.faiss_store import FaissDocumentStore

    if directory.exists():
        shutil.rmtree(directory)
    vectors = vectors_for(size)
    started = time.perf_counter()
    store = FaissDocumentStore.create(directory, embedder="bench/random", dimension=DIMENSION, index_type="auto")

    def write_all(target) -> None:
        for start in range(0, size, BATCH):
            target.write_documents(documents_for(vectors[start : start + BATCH], start))

    committed(store, write_all)
    return {"build_s": time.perf_counter() - started, "structure": store.structure}


def query_figures(store, queries: np.ndarray, truth: np.ndarray) -> dict:
    store.search(queries[0].tolist(), top_k=10)  # first-touch costs are not a query's latency
    latencies, hits = [], 0
    for row, query in enumerate(queries):
        started = time.perf_counter()
        results = store.search(query.tolist(), top_k=10)
        latencies.append(time.perf_counter() - started)
        hits += len({document.id for document in results} & {f"doc-{i}" for i in truth[row].tolist()})
    return {"ms_per_query": 1000 * float(np.median(latencies)), "recall_at_10": hits / (10 * len(queries))}


def exact_truth(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray) -> np.ndarray:
    import faiss

    faiss.omp_set_num_threads(2)  # the truth is not timed
    index = faiss.IndexFlatIP(DIMENSION)
    index.add(vectors)
    found = index.search(queries, 10)[1]
    faiss.omp_set_num_threads(1)
    return ids[found]


def phase_changes(size: int, directory: Path) -> dict:
    import faiss

    faiss.omp_set_num_threads(1)
    from spanqa.indexing.store import faiss_store as store_module

    segmented = hasattr(store_module, "IndexTuning")
    started = time.perf_counter()
    if segmented:
        # No merging: the bench piles segments up on purpose (compaction is measured at the end).
        settings = store_module.IndexTuning(merge_factor=1000)
        store = store_module.FaissDocumentStore.open(directory, settings=settings)
    else:
        store = store_module.FaissDocumentStore.open(directory)
    figures: dict = {"open_s": time.perf_counter() - started}

    added = new_vectors(size, ADDED_FILE_CHUNKS, seed=77)
    first = 10 * size
    figures["add_s"], figures["add_bytes"] = timed_commit(
        store, directory, lambda target: target.write_documents(documents_for(added, first, source="/docs/added.pdf"))
    )
    figures["remove_s"], figures["remove_bytes"] = timed_commit(
        store, directory, lambda target: target.delete_by_source("/docs/added.pdf")
    )

    queries = queries_for(size, QUERIES)
    department = {"field": "meta.department", "operator": "==", "value": "dept7"}
    store.search(queries[0].tolist(), top_k=10, filters=department)
    latencies, filled = [], True
    for query in queries[:FILTER_QUERIES]:
        started = time.perf_counter()
        results = store.search(query.tolist(), top_k=10, filters=department)
        latencies.append(time.perf_counter() - started)
        filled = filled and len(results) == 10 and all(doc.meta["department"] == "dept7" for doc in results)
    figures["filter_ms"], figures["filter_filled"] = 1000 * float(np.median(latencies)), filled

    base = vectors_for(size)
    vectors, ids = base, np.arange(size)
    truth = exact_truth(vectors, ids, queries)
    figures["segments"] = [{"segments": len(store.segments) if segmented else 1, **query_figures(store, queries, truth)}]
    if segmented:
        next_id = 20 * size
        for more in (3, 12):
            for _ in range(more):
                block = new_vectors(size, SEGMENT_CHUNKS, seed=next_id)
                store.write_documents(documents_for(block, next_id))
                vectors = np.concatenate([vectors, block])
                ids = np.concatenate([ids, np.arange(next_id, next_id + len(block))])
                next_id += len(block)
            truth = exact_truth(vectors, ids, queries)
            figures["segments"].append({"segments": len(store.segments), **query_figures(store, queries, truth)})
        started = time.perf_counter()
        store.compact()
        figures["compact_s"] = time.perf_counter() - started
        figures["segments"].append({"segments": "compacted", **query_figures(store, queries, truth)})
    return figures


def run_phase(code: Path | None, *arguments: str) -> dict:
    environment = {**os.environ, "HAYSTACK_TELEMETRY_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    if code is not None:
        environment["PYTHONPATH"] = str(code)
    completed = subprocess.run([sys.executable, __file__, "phase", *arguments], capture_output=True, text=True, env=environment, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"phase {arguments} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", nargs="?", choices=["phase"])
    parser.add_argument("name", nargs="?", choices=["build", "changes"])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/spanqa-store-changes"))
    parser.add_argument("--code", type=Path, help="a folder holding the spanqa to measure (default: this one)")
    parser.add_argument("--label", default="after")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    directory = args.work / f"index-{args.size}"
    if args.phase == "phase":
        result = phase_build(args.size, directory) if args.name == "build" else phase_changes(args.size, directory)
        print(json.dumps(result))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"{args.label}: building {args.size:,} vectors", file=sys.stderr, flush=True)
    built = run_phase(args.code, "build", "--size", str(args.size), "--work", str(args.work))
    print(f"  {built}", file=sys.stderr, flush=True)
    changes = run_phase(args.code, "changes", "--size", str(args.size), "--work", str(args.work))
    shutil.rmtree(directory, ignore_errors=True)
    row = {"label": args.label, "size": args.size, **built, **changes}
    print(json.dumps(row, indent=2))
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
