"""The indexer the crash tests kill: writes numbered batches into a store, one commit per batch.

Run as `python crash_writer.py INDEX_DIR BATCHES BATCH_SIZE INDEX_TYPE`, it imports everything once
and prints "ready"; then each "go" line on stdin forks a writer (printing its pid, "committed B"
after each batch's commit, "compacted B" after each compaction, and "exit STATUS" at the end), so a test can kill writers many times without paying for imports each time. A
writer resumes after the last committed batch, so running it again after a kill finishes the job.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import numpy as np

DIMENSION = 64
COMPACT_EVERY = 7  # a compaction (its own commit) after every 7th batch


def expected_contents(batches: int, size: int) -> dict[str, str]:
    """The documents after `batches` committed batches: batch b adds b{b}-0..., deletes b{b-1}-0
    and overwrites b{b-1}-1."""
    contents = {}
    for batch in range(batches):
        for item in range(size):
            if item == 0 and batch < batches - 1:
                continue
            version = batch + 1 if item == 1 and batch < batches - 1 else 0
            contents[f"b{batch}-{item}"] = f"b{batch}-{item} v{version}"
    return contents


def batch_vectors(batch: int, size: int) -> np.ndarray:
    return np.random.default_rng(batch).normal(size=(size, DIMENSION)).astype(np.float32)


def committed_batches(store, size: int) -> int:
    """How many batches the store holds (item 2 of a batch is never deleted)."""
    batches = 0
    while store.filter_documents({"field": "id", "operator": "==", "value": f"b{batches}-2"}):
        batches += 1
    return batches


def run_writer(index_dir: Path, batches: int, size: int, index_type: str) -> None:
    from haystack import Document
    from haystack.document_stores.types import DuplicatePolicy

    from spanqa.indexing.store.faiss_store import FaissDocumentStore, IndexTuning

    # Small tiers, so commits merge segments often (a kill lands in merges too).
    settings = IndexTuning(merge_factor=3, merge_floor_vectors=1000)

    if FaissDocumentStore.exists(index_dir):
        store = FaissDocumentStore.open(index_dir, settings=settings)
    else:
        store = FaissDocumentStore.create(index_dir, embedder="test/e", dimension=DIMENSION, index_type=index_type, settings=settings)
    start = committed_batches(store, size)
    for batch in range(start, batches):
        vectors = batch_vectors(batch, size)
        with store.writer():
            store.write_documents([
                Document(id=f"b{batch}-{item}", content=f"b{batch}-{item} v0",
                         meta={"source": f"/src{batch % 3}", "page": item % 5 + 1}, embedding=vectors[item].tolist())
                for item in range(size)
            ])
            if batch > 0:
                store.delete_documents([f"b{batch - 1}-0"])
                replacement = np.random.default_rng(1000 + batch).normal(size=DIMENSION).tolist()
                store.write_documents(
                    [Document(id=f"b{batch - 1}-1", content=f"b{batch - 1}-1 v{batch}",
                              meta={"source": f"/src{(batch - 1) % 3}", "page": 2}, embedding=replacement)],
                    policy=DuplicatePolicy.OVERWRITE,
                )
        print(f"committed {batch}", flush=True)
        if batch % COMPACT_EVERY == COMPACT_EVERY - 1:
            store.compact()
            print(f"compacted {batch}", flush=True)


def main() -> None:
    index_dir, batches, size, index_type = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    import gc

    import spanqa.indexing.store.faiss_store  # noqa: F401 - imported once, before the forks

    # The imported modules' objects move to a generation the collector never scans: otherwise the
    # first full collection in each forked writer walks (and copies on write) the whole inherited
    # heap, ~0.15 s landing in whichever batch it happens to fall.
    gc.freeze()

    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            continue
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                run_writer(index_dir, batches, size, index_type)
            except BaseException:  # noqa: BLE001 - the test reads the status, the traceback goes to stderr
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            os._exit(code)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {status}", flush=True)


if __name__ == "__main__":
    main()
