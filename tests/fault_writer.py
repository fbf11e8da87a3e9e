"""The store under injected write failures, the way SQLite tests its own I/O: fail the Nth write.

Run as `python fault_writer.py WORK_DIR INDEX_TYPE OPERATION ERRNO MODE [STRIDE]` with LD_PRELOAD naming the
shim built from tests/faults/failwrite.c. For one operation (a commit that adds, deletes and
overwrites chunks and merges segments; a compaction; a commit that trains the index's quantizer; a
chunk-settings change; creating an index) it first counts the writes the operation makes, then for
every N from 1 to that count (every STRIDE-th N, always including the last):

1. copies the committed baseline index and opens it;
2. arms the shim: the Nth write under the index fails with ERRNO (ENOSPC: a full disk; EIO: a
   failing device), and with MODE "persistent" every write after it too, until disarmed;
3. runs the operation: it either succeeds or raises a StorageError (nothing else);
4. checks, with the fault still armed, that the store reads exactly its last commit (the baseline
   if the operation failed, the operation's result if it succeeded) and that the index is sound;
5. disarms ("space returns"), checks again, runs the operation again: it succeeds;
6. closes, opens the index afresh and checks it equals the operation's result and is sound.

It prints one JSON line: the write count and the outcomes seen. Any broken promise raises, and the
process exits non-zero with the traceback.
"""

from __future__ import annotations

import ctypes
import errno
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from haystack import Document
from haystack.document_stores.types import DuplicatePolicy

from spanqa.errors import StorageError
from spanqa.indexing.store.faiss_store import FaissDocumentStore, IndexTuning

DIMENSION = 16
BATCH = 40
# Small tiers and a low IVF threshold: the operations below merge segments and train a quantizer.
SETTINGS = IndexTuning(merge_factor=3, merge_floor_vectors=30, approximate_min_vectors=100, ivf_train_iterations=2)


def shim() -> ctypes.CDLL:
    library = ctypes.CDLL(None)
    library.failwrite_arm.argtypes = [ctypes.c_char_p, ctypes.c_long, ctypes.c_int, ctypes.c_int]
    library.failwrite_disarm.restype = ctypes.c_long
    library.failwrite_count.restype = ctypes.c_long
    return library


def batch(number: int, size: int = BATCH) -> list[Document]:
    vectors = np.random.default_rng(number).normal(size=(size, DIMENSION)).astype(np.float32)
    return [
        Document(id=f"b{number}-{item}", content=f"batch {number} item {item} words{item % 7}",
                 meta={"source": f"/docs/f{number}.txt", "page": item % 3 + 1, "tag": f"t{item % 4}"},
                 embedding=vectors[item].tolist())
        for item in range(size)
    ]


def build_baseline(index_dir: Path, index_type: str) -> None:
    store = FaissDocumentStore.create(index_dir, embedder="test/e", dimension=DIMENSION, index_type=index_type, settings=SETTINGS)
    for number in range(2):  # two segments of one tier: the next commit's segment makes three, merged
        with store.writer():
            store.write_documents(batch(number))
    store.delete_documents(["b0-3"])
    store.chunking = {"chunk_tokens": 100}
    store.close()


def operation(store: FaissDocumentStore, name: str) -> None:
    if name == "commit":  # adds, deletes, overwrites; merges the tier's three segments into one
        with store.writer():
            store.write_documents(batch(7))
            store.delete_documents(["b1-0", "b1-1"])
            store.write_documents([Document(id="b0-2", content="rewritten", meta={"source": "/docs/f0.txt", "page": 1},
                                            embedding=np.full(DIMENSION, 0.5).tolist())], policy=DuplicatePolicy.OVERWRITE)
            store.chunking = {"chunk_tokens": 120}
    elif name == "compact":
        store.compact()
    elif name == "quantizer":  # the index grows past approximate_min_vectors: IVF centroids trained, all rewritten
        with store.writer():
            store.write_documents(batch(8, size=160))
    elif name == "settings":  # only the chunk settings change (the database and the manifest mirror)
        store.chunking = {"chunk_tokens": 999}
    else:
        raise ValueError(name)


def state(store: FaissDocumentStore) -> dict:
    """What a reader sees: every chunk (id, text, metadata), the file list, the chunk settings, and
    for each chunk the best match of its own vector (so the vectors are checked, not only rows)."""
    documents = sorted((doc.id, doc.content, json.dumps(doc.meta, sort_keys=True)) for doc in store.filter_documents())
    files = [(f.source, f.sha256, f.pages, f.chunks) for f in store.files()]
    problems = store.verify()
    if problems:
        raise AssertionError(f"index not sound: {problems}")
    searches = {}
    for doc_id in [d[0] for d in documents[:: max(1, len(documents) // 12)]]:
        vector = stored_vector(store, doc_id)
        best = store.search(vector.tolist(), top_k=1)[0]
        searches[doc_id] = (best.id, round(best.score, 4))
    keyword = [doc.id for doc in store.keyword_search("words3", top_k=50)]
    return {"documents": documents, "files": files, "chunking": store.chunking, "searches": searches,
            "keyword": sorted(keyword), "count": store.count_documents(), "segments": store.segments}


def stored_vector(store: FaissDocumentStore, doc_id: str) -> np.ndarray:
    number, item = doc_id[1:].split("-")
    if doc_id == "b0-2" and store.filter_documents({"field": "content", "operator": "==", "value": "rewritten"}):
        return np.full(DIMENSION, 0.5, dtype=np.float32)
    return np.asarray(batch(int(number), size=160 if number == "8" else BATCH)[int(item)].embedding, dtype=np.float32)


def fresh_state(index_dir: Path) -> dict:
    store = FaissDocumentStore.open(index_dir, settings=SETTINGS)
    try:
        return state(store)
    finally:
        store.close()


def trials(writes: int, stride: int) -> list[int]:
    return sorted(set(range(1, writes + 1, stride)) | {writes})


def run(work: Path, index_type: str, name: str, error_number: int, persistent: bool, stride: int) -> dict:
    library = shim()
    baseline = work / "baseline"
    if name == "create":
        return run_create(work, library, error_number, persistent, stride)
    build_baseline(baseline, index_type)
    before = fresh_state(baseline)
    # Count the operation's writes, and see its result.
    counted = work / "counted"
    shutil.copytree(baseline, counted)
    store = FaissDocumentStore.open(counted, settings=SETTINGS)
    library.failwrite_arm(str(counted).encode(), 0, 0, error_number)
    operation(store, name)
    writes = library.failwrite_disarm()
    after = state(store)
    store.close()
    if after == before:
        raise AssertionError(f"operation {name} changed nothing: the test would prove nothing")
    outcomes = {"failed": 0, "succeeded": 0}
    for nth in trials(writes, stride):
        trial = work / f"trial-{nth}"
        shutil.copytree(baseline, trial)
        store = FaissDocumentStore.open(trial, settings=SETTINGS)
        library.failwrite_arm(str(trial).encode(), nth, int(persistent), error_number)
        try:
            operation(store, name)
            expected, outcome = after, "succeeded"
        except StorageError as exc:
            expected, outcome = before, "failed"
            # SQLite reports some failed writes (a sync, the WAL header) as an I/O error whatever the errno.
            if isinstance(exc.cause, OSError) and exc.full != (error_number == errno.ENOSPC):
                raise AssertionError(f"write {nth}: StorageError.full={exc.full} for errno {error_number}") from exc
        outcomes[outcome] += 1
        try:
            seen = state(store)
            if seen != expected:
                raise AssertionError(f"write {nth} failed, disk still failing: the store reads no commit ({outcome})")
            library.failwrite_disarm()
            if state(store) != expected:
                raise AssertionError(f"write {nth}: after space returned the store reads no commit ({outcome})")
            if outcome == "failed":
                operation(store, name)  # the same operation, once there is space
                if state(store) != after:
                    raise AssertionError(f"write {nth}: the operation made again did not give its result")
            store.close()
            if fresh_state(trial) != after:
                raise AssertionError(f"write {nth}: the index opened afresh is not the operation's result")
        finally:
            library.failwrite_disarm()
        shutil.rmtree(trial)
    return {"writes": writes, **outcomes}


def run_create(work: Path, library: ctypes.CDLL, error_number: int, persistent: bool, stride: int) -> dict:
    """Creating an index on a failing disk: it either exists, empty and sound, or does not exist;
    creating it again once there is space works."""
    counted = work / "counted"
    library.failwrite_arm(str(counted).encode(), 0, 0, error_number)
    FaissDocumentStore.create(counted, embedder="test/e", dimension=DIMENSION, settings=SETTINGS).close()
    writes = library.failwrite_disarm()
    outcomes = {"failed": 0, "succeeded": 0}
    for nth in trials(writes, stride):
        trial = work / f"create-{nth}"
        trial.mkdir()
        library.failwrite_arm(str(trial).encode(), nth, int(persistent), error_number)
        try:
            FaissDocumentStore.create(trial, embedder="test/e", dimension=DIMENSION, settings=SETTINGS).close()
            outcomes["succeeded"] += 1
        except StorageError:
            outcomes["failed"] += 1
        finally:
            library.failwrite_disarm()
        if FaissDocumentStore.exists(trial):
            if fresh_state(trial)["count"] != 0:
                raise AssertionError(f"write {nth}: a created index is not empty")
        store = FaissDocumentStore.open(trial, settings=SETTINGS) if FaissDocumentStore.exists(trial) else \
            FaissDocumentStore.create(trial, embedder="test/e", dimension=DIMENSION, settings=SETTINGS)
        with store.writer():
            store.write_documents(batch(1))
        store.close()
        if fresh_state(trial)["count"] != BATCH:
            raise AssertionError(f"write {nth}: the index made again after space returned lost its first commit")
        shutil.rmtree(trial)
    return {"writes": writes, **outcomes}


def main() -> None:
    work, index_type, name, error_name, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    stride = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    result = run(work, index_type, name, getattr(errno, error_name), mode == "persistent", stride)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
