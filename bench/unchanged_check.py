"""What telling an unchanged file costs when an indexing run starts again (issue #15: a re-run of a
large index, e.g. after a Ray run stopped, checks every file already indexed before parsing any).

    .venv/bin/python bench/unchanged_check.py [--files 200] [--chunks-per-file 500]

An index of `--files` files of `--chunks-per-file` chunks each (795-character chunks, metadata as
indexing writes it, a third of the pages OCR'd) is checked file by file the two ways:

- `every chunk read`: the file's chunks read back as documents (`filter_documents` on its source)
  and each one's metadata compared, as `Ingest` did before;
- `file summary`: `store.file_chunks(source)`, one chunk's metadata and the distinct OCR engines of
  the file's chunks, as `Ingest` does now.

Both sides reach the same verdict (checked). Reported: seconds, microseconds per stored chunk, and
the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from haystack import Document


def main() -> None:
    from spanqa.chunk_meta import ChunkMeta
    from spanqa.indexing.store.faiss_store import FaissDocumentStore

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--chunks-per-file", type=int, default=500)
    args = parser.parse_args()
    store = FaissDocumentStore.create(Path(tempfile.mkdtemp(prefix="spanqa-unchanged-")) / "index", embedder="bench",
                                      dimension=8)
    rng = np.random.default_rng(0)
    pages = args.chunks_per_file // 6 + 1
    sources = [f"/kb/file{number}.pdf" for number in range(args.files)]
    for source in sources:
        store.write_documents([
            Document(
                id=f"{source}#{chunk}", content="x" * 795, embedding=rng.normal(size=8).tolist(),
                meta=ChunkMeta(source=source, file_type="pdf", page=chunk // 6 + 1, page_count=pages, start=0, end=795,
                               sha256="ab" * 32, ocr="rapidocr 3.10.0" if (chunk // 6) % 3 == 0 else None,
                               extra={"team": "hr"}).to_meta(),
            )
            for chunk in range(args.chunks_per_file)
        ])

    def every_chunk_read(source: str) -> tuple[dict, set]:
        metas = [ChunkMeta.from_meta(document.meta) for document in
                 store.filter_documents({"field": "meta.source", "operator": "==", "value": source})]
        return metas[0].extra, {meta.ocr for meta in metas if meta.ocr is not None}

    def file_summary(source: str) -> tuple[dict, set]:
        stored = store.file_chunks(source)
        return ChunkMeta.from_meta(stored.meta).extra, set(stored.ocr_engines)

    timings, verdicts = {}, {}
    for name, check in (("every chunk read", every_chunk_read), ("file summary", file_summary)):
        started = time.perf_counter()
        verdicts[name] = [check(source) for source in sources]
        timings[name] = time.perf_counter() - started
    if verdicts["every chunk read"] != verdicts["file summary"]:
        raise SystemExit("the two checks disagree")
    chunks = args.files * args.chunks_per_file
    print(f"{args.files} files, {chunks:,} chunks\n")
    print("| check | seconds | us per chunk | vs every chunk read |")
    print("| --- | --- | --- | --- |")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.3f} | {seconds / chunks * 1e6:.2f} | {timings['every chunk read'] / seconds:.1f}x |")


if __name__ == "__main__":
    main()
