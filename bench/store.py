"""The index store at scale: spanqa's FaissDocumentStore (flat and approximate) against faiss-haystack.

    .venv/bin/python bench/store.py --size 1000000 --haystack-size 100000 --work /tmp/store-bench
    .venv/bin/python bench/store.py changes --size 1000000   # commits, filters, segments (bench/store_changes.py)

For each side, in fresh processes (so memory figures are the side's own):

- build: documents with 384-d unit vectors and metadata written through the store's
  `write_documents` in batches of 10,000, then saved; seconds and the process's peak RSS;
- open: seconds to open the saved index in a new process, and its RSS after opening;
- query: single-query latency with one FAISS thread (`store.search(..., top_k=10)`, which for
  spanqa includes fetching the 10 chunks from SQLite), RSS after the queries, and recall@10
  against exact cosine search over the same vectors.

Vectors (`--data`), 384-d, normalised, queries are fresh draws of the same kind:

- `documents` (default): chunks of documents of topics, the structure a knowledge base has:
  topic centres (one per 100 vectors), document offsets (norm 0.8, one document per 10 chunks),
  chunk noise (norm 0.6); a query is a new chunk of a random existing document;
- `clusters`: one Gaussian centre per 100 vectors, noise 0.07 per dimension (norm 1.37): the ten
  nearest neighbours of a query are the ones of its cluster whose noise happens to align with its;
- `uniform`: i.i.d. Gaussian directions, no structure at all.
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

DIMENSION = 384
BATCH = 10_000
NOISE = 0.07
CLUSTER_SIZE = 100
REPO = Path(__file__).resolve().parent.parent


def mixture(size: int, seed: int, centres: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(centres), size)
    vectors = centres[labels] + rng.normal(scale=NOISE, size=(size, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


DATA = "documents"  # set from --data; read by vectors_for and queries_for


def document_centres(size: int) -> np.ndarray:
    """One point per document (10 chunks each): its topic's centre (one topic per 10 documents) plus
    the document's own offset."""
    scale = 1 / np.sqrt(DIMENSION)
    topics = np.random.default_rng(2024).normal(scale=scale, size=(max(1, size // 100), DIMENSION))
    count = max(1, size // 10)
    offsets = np.random.default_rng(2025).normal(scale=0.8 * scale, size=(count, DIMENSION))
    return (topics[np.arange(count) * len(topics) // count] + offsets).astype(np.float32)


def chunks_of(documents: np.ndarray, owners: np.ndarray, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(scale=0.6 / np.sqrt(DIMENSION), size=(len(owners), DIMENSION))
    vectors = (documents[owners] + noise).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def uniform_data(size: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(size, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def queries_for(size: int, count: int) -> np.ndarray:
    if DATA == "documents":
        documents = document_centres(size)
        owners = np.random.default_rng(999_999_998).integers(0, len(documents), count)
        return chunks_of(documents, owners, 999_999_999)
    if DATA == "uniform":
        return uniform_data(count, 999_999_999)
    return mixture(count, 999_999_999, centres_for(size))


def centres_for(size: int) -> np.ndarray:
    centres = np.random.default_rng(12345).normal(size=(max(1, size // CLUSTER_SIZE), DIMENSION)).astype(np.float32)
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def vectors_for(size: int) -> np.ndarray:
    """The data set of `size` vectors of kind DATA."""
    if DATA == "documents":
        documents = document_centres(size)
        return np.concatenate([
            chunks_of(documents, np.arange(start, min(size, start + BATCH)) * len(documents) // size, start)
            for start in range(0, size, BATCH)
        ])
    if DATA == "uniform":
        return np.concatenate([uniform_data(min(BATCH, size - start), start) for start in range(0, size, BATCH)])
    centres = centres_for(size)
    return np.concatenate([mixture(min(BATCH, size - start), start, centres) for start in range(0, size, BATCH)])


def meta_for(index: int) -> dict:
    return {
        "source": f"/docs/file{index // 200:05d}.{'pdf' if index % 3 else 'md'}",
        "file_type": "pdf" if index % 3 else "md",
        "page": index % 50 + 1,
        "date": f"2024-{index % 12 + 1:02d}-{index % 28 + 1:02d}",
        "tags": ["hr"] if index % 7 == 0 else [],
    }


def content_for(index: int) -> str:
    return f"Chunk {index}: a passage of about one hundred characters standing in for real text, number {index}."


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB."""
    import resource

    import psutil

    current = psutil.Process().memory_info().rss / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return current, peak


def anonymous_rss_mb() -> float:
    """Resident memory that is not a mapped file: what the process itself holds (memory-mapped
    index pages count in RSS but are page cache the kernel can drop)."""
    import psutil

    info = psutil.Process().memory_info()
    return (info.rss - info.shared) / 2**20


# -- one side, one phase, in its own process ---------------------------------------------------


def open_store(side: str, directory: Path, dimension: int):
    if side == "haystack":
        from haystack_integrations.document_stores.faiss import FAISSDocumentStore

        return FAISSDocumentStore(index_path=str(directory / "store"), embedding_dim=dimension)
    from spanqa.indexing.store.faiss_store import FaissDocumentStore

    return FaissDocumentStore.open(directory)


def phase_build(side: str, index_type: str, size: int, directory: Path) -> dict:
    from haystack import Document

    if directory.exists():
        shutil.rmtree(directory)
    vectors = vectors_for(size)
    started = time.perf_counter()
    if side == "haystack":
        from haystack_integrations.document_stores.faiss import FAISSDocumentStore

        directory.mkdir(parents=True)
        store = FAISSDocumentStore(index_path=str(directory / "store"), embedding_dim=DIMENSION)
    else:
        from spanqa.indexing.store.faiss_store import FaissDocumentStore

        store = FaissDocumentStore.create(directory, embedder="bench/random", dimension=DIMENSION, index_type=index_type)

    def write_all() -> None:
        for start in range(0, size, BATCH):
            block = vectors[start : start + BATCH]
            store.write_documents([
                Document(id=f"doc-{start + row}", content=content_for(start + row), meta=meta_for(start + row),
                         embedding=block[row].tolist())
                for row in range(len(block))
            ])

    if side == "haystack":
        write_all()
        store.save(str(directory / "store"))
    else:
        with store.writer():  # one commit, as one indexing run of the whole collection
            write_all()
    seconds = time.perf_counter() - started
    current, peak = rss_mb()
    disk = sum(path.stat().st_size for path in directory.iterdir() if path.is_file()) / 2**20
    structure = "flat" if side == "haystack" else store.structure
    return {"build_s": seconds, "build_rss_mb": current, "build_peak_rss_mb": peak, "disk_mb": disk,
            "structure": structure}


def phase_query(side: str, size: int, directory: Path, queries_path: Path, truth_path: Path, query_count: int) -> dict:
    import faiss

    faiss.omp_set_num_threads(1)
    # Imports are not part of opening an index: load the modules before the clock starts.
    if side == "haystack":
        import haystack_integrations.document_stores.faiss  # noqa: F401
    else:
        import spanqa.indexing.store.faiss_store  # noqa: F401
    before, _ = rss_mb()
    started = time.perf_counter()
    store = open_store(side, directory, DIMENSION)
    open_s = time.perf_counter() - started
    after_open, _ = rss_mb()
    queries = np.load(queries_path)[:query_count]
    truth = np.load(truth_path)[:query_count]
    store.search(queries[0].tolist(), top_k=10)  # first-touch costs are not a query's latency

    def measure() -> tuple[list[float], int]:
        latencies, hits = [], 0
        for row, query in enumerate(queries):
            started = time.perf_counter()
            results = store.search(query.tolist(), top_k=10)
            latencies.append(time.perf_counter() - started)
            found = {int(document.id.split("-")[1]) for document in results}
            hits += len(found & set(truth[row].tolist()))
        return latencies, hits

    sweep = {}
    if side == "spanqa" and store.structure == "hnsw":
        from spanqa.indexing.store.faiss_store import FaissDocumentStore, IndexTuning

        chosen = store
        for ef_search in (32, 48, 64, 96, 128):
            store = FaissDocumentStore.open(directory, settings=IndexTuning(hnsw_ef_search=ef_search))
            latencies, hits = measure()
            sweep[ef_search] = {"ms_per_query_median": 1000 * float(np.median(latencies)),
                                "recall_at_10": hits / (10 * len(queries))}
        store = chosen
    latencies, hits = measure()
    after_queries, peak = rss_mb()
    anonymous = anonymous_rss_mb()
    return {
        "ef_search_sweep": sweep,
        "anonymous_rss_after_queries_mb": anonymous,
        "open_s": open_s, "rss_before_open_mb": before, "rss_after_open_mb": after_open,
        "rss_after_queries_mb": after_queries, "ms_per_query_median": 1000 * float(np.median(latencies)),
        "ms_per_query_mean": 1000 * float(np.mean(latencies)), "recall_at_10": hits / (10 * len(queries)),
        "queries": len(queries),
    }


def run_phase(*arguments: str) -> dict:
    environment = {**os.environ, "HAYSTACK_TELEMETRY_ENABLED": "False"}
    completed = subprocess.run(
        [sys.executable, __file__, "phase", *arguments, "--data", DATA], capture_output=True, text=True, env=environment,
        cwd=REPO.parent,
    )
    if completed.returncode != 0:
        raise SystemExit(f"phase {arguments} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def exact_truth(size: int, queries: np.ndarray) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(DIMENSION)
    index.add(vectors_for(size))
    return index.search(queries, 10)[1]


def main() -> None:
    if sys.argv[1:2] == ["changes"]:
        # What a change costs and how search holds up with segments (issue #14): bench/store_changes.py.
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import store_changes

        sys.argv = [store_changes.__file__, *sys.argv[2:]]
        store_changes.main()
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    phase = sub.add_parser("phase")
    phase.add_argument("name", choices=["build", "query"])
    phase.add_argument("side", choices=["spanqa", "haystack"])
    phase.add_argument("index_type")
    phase.add_argument("size", type=int)
    phase.add_argument("directory", type=Path)
    phase.add_argument("--queries-file", type=Path)
    phase.add_argument("--truth-file", type=Path)
    phase.add_argument("--query-count", type=int, default=200)
    phase.add_argument("--data", choices=["documents", "clusters", "uniform"], default="documents")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--haystack-size", type=int, default=100_000)
    parser.add_argument("--approximate", default="auto", help="spanqa's approximate index type (auto, ivf, hnsw)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--flat-queries", type=int, default=50, help="queries for exact (slow) sides")
    parser.add_argument("--work", type=Path, default=Path("/tmp/spanqa-store-bench"))
    parser.add_argument("--sides", default="spanqa-flat,spanqa-approx,haystack")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--data", choices=["documents", "clusters", "uniform"], default="documents")
    args = parser.parse_args()
    global DATA
    DATA = args.data

    if args.command == "phase":
        if args.name == "build":
            result = phase_build(args.side, args.index_type, args.size, args.directory)
        else:
            result = phase_query(args.side, args.size, args.directory, args.queries_file, args.truth_file,
                                 args.query_count)
        print(json.dumps(result))
        return

    args.work.mkdir(parents=True, exist_ok=True)
    plans = []
    for side in args.sides.split(","):
        if side == "spanqa-flat":
            plans.append(("spanqa", "flat", args.size, args.flat_queries))
        elif side == "spanqa-approx":
            plans.append(("spanqa", args.approximate, args.size, args.queries))
        elif side == "haystack":
            plans.append(("haystack", "flat", args.haystack_size, args.flat_queries))
        elif side.startswith("spanqa-flat@"):
            plans.append(("spanqa", "flat", int(side.split("@")[1]), args.flat_queries))
    truths: dict[int, Path] = {}
    rows = []
    for side, index_type, size, query_count in plans:
        queries_path = args.work / f"queries-{size}.npy"
        if size not in truths:
            # Queries are fresh draws from the mixture of this size; truth is exact cosine search.
            queries = queries_for(size, max(args.queries, args.flat_queries))
            np.save(queries_path, queries)
            truths[size] = args.work / f"truth-{size}.npy"
            np.save(truths[size], exact_truth(size, queries))
        directory = args.work / f"{side}-{index_type}-{size}"
        print(f"{side} {index_type} {size:,}: building", file=sys.stderr, flush=True)
        built = run_phase("build", side, index_type, str(size), str(directory))
        print(f"  {built}", file=sys.stderr, flush=True)
        queried = run_phase("query", side, index_type, str(size), str(directory), "--queries-file", str(queries_path),
                            "--truth-file", str(truths[size]), "--query-count", str(query_count))
        print(f"  {queried}", file=sys.stderr, flush=True)
        rows.append({"side": side, "index_type": index_type, "size": size, **built, **queried})
        shutil.rmtree(directory, ignore_errors=True)

    print("| side | index | vectors | build s | build peak RSS MiB | disk MiB | open s | RSS after open MiB "
          "| RSS after queries MiB | ms/query (median) | recall@10 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        name = "faiss-haystack" if row["side"] == "haystack" else "spanqa"
        print(f"| {name} | {row['index_type']} ({row['structure']}) | {row['size']:,} | {row['build_s']:.1f} "
              f"| {row['build_peak_rss_mb']:.0f} | {row['disk_mb']:.0f} | {row['open_s']:.2f} "
              f"| {row['rss_after_open_mb']:.0f} | {row['rss_after_queries_mb']:.0f} "
              f"| {row['ms_per_query_median']:.2f} | {row['recall_at_10']:.3f} |")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
