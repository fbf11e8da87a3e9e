"""Indexing benchmarks (issue #4).

Two measurements, one script:

``python bench/indexing.py speed --pdfs ../shared/data/pdfs --embedder MINILM_DIR --tokenizer READER_DIR``
    Indexes the same PDFs with spanqa's indexer and with the plain Haystack chain
    (PyPDFToDocument -> DocumentSplitter -> SentenceTransformersDocumentEmbedder -> FAISSDocumentStore
    writer from faiss-haystack) in one process with the same torch threads, then asks both indexes the
    same questions (bench/indexing_questions.json: IRS instructions and Federal Register facts with
    their pages) and reports pages/s, chunks/s, the speed ratio and retrieval recall of both.

``python bench/indexing.py chunk-sizes --squad ../shared/data/squad/dev-v1.1-part-a.json --embedder MINILM_DIR --tokenizer READER_DIR``
    Chooses chunk sizes: SQuAD articles (paragraphs joined into one long text each) are chunked with
    several settings, embedded, and every question is searched; a hit is a retrieved chunk that holds
    a gold answer span whole. Prints recall@k, chunk counts, tokens and embedding time per setting.

Both print plain text tables (and `--json PATH` writes the figures).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
QUESTIONS_FILE = HERE / "indexing_questions.json"


def normalized(text: str) -> str:
    """Lower case, hyphenated line breaks joined, every run of non-alphanumerics one space."""
    text = re.sub(r"(?<=[a-z])-\s*\n\s*(?=[a-z])", "", text)
    return re.sub(r"[^0-9a-z]+", " ", text.lower()).strip()


# ---------------------------------------------------------------------------------------------
# chunk-sizes


def squad_corpus(path: Path, articles: int, questions: int, seed: int):
    data = json.loads(path.read_text(encoding="utf-8"))["data"][:articles]
    texts, qas = [], []
    for article_index, article in enumerate(data):
        parts, offset = [], 0
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                spans = [(offset + a["answer_start"], offset + a["answer_start"] + len(a["text"])) for a in qa["answers"]]
                qas.append((qa["question"], article_index, spans))
            parts.append(context)
            offset += len(context) + 2
        texts.append("\n\n".join(parts))
    random.Random(seed).shuffle(qas)
    return texts, qas[:questions]


def run_chunk_sizes(args) -> dict:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from spanqa.indexing.ingest.parsing import estimate_tokens, token_weights
    from spanqa.indexing.ingest.spans import chunk_spans, context_chunk_spans, word_spans

    tokenizer_file = str(Path(args.tokenizer) / "tokenizer.json")
    texts, qas = squad_corpus(Path(args.squad), args.articles, args.questions, args.seed)
    model = SentenceTransformer(str(args.embedder), device="cpu")
    embed_tokenizer = model.tokenizer
    started = time.perf_counter()
    query_vectors = model.encode([q for q, _, _ in qas], batch_size=64, normalize_embeddings=True)
    print(f"{len(texts)} articles, {sum(len(t.split()) for t in texts)} words, {len(qas)} questions "
          f"(query embedding {time.perf_counter() - started:.1f} s)", flush=True)

    weights_per_text = []
    estimate_total = real_total = 0
    for text in texts:
        words = word_spans(text)
        real = token_weights(text, words, tokenizer_file)
        weights_per_text.append(real)
        real_total += sum(real)
        estimate_total += sum(estimate_tokens(text[s:e]) for s, e in words)
    print(f"reader tokens {real_total}; words-based estimate {estimate_total} "
          f"({estimate_total / real_total:.3f} x the real count)", flush=True)

    settings = [("haystack word 200/0", "haystack", 200, 0)]
    for size, margin in [(64, 32), (128, 32), (128, 64), (192, 32), (192, 48), (256, 24)]:
        settings.append((f"context {size}+2x{margin}", "context", size, margin))
    for size, overlap in [(128, 32), (192, 32), (256, 32), (317, 48)]:
        settings.append((f"overlap {size}/{overlap}", "overlap", size, overlap))
    if args.only:
        settings = [s for s in settings if any(o in s[0] for o in args.only)]

    rows = []
    for name, mode, size, extra in settings:
        chunks = []  # (text index, start, end, embed text)
        for index, text in enumerate(texts):
            weights = weights_per_text[index]
            if mode == "haystack":
                from haystack import Document
                from haystack.components.preprocessors import DocumentSplitter

                splitter = DocumentSplitter(split_by="word", split_length=size, split_overlap=extra)
                for doc in splitter.run([Document(content=text)])["documents"]:
                    start = doc.meta["split_idx_start"]
                    chunks.append((index, start, start + len(doc.content), doc.content))
            elif mode == "context":
                for (cs, ce), (s, e) in context_chunk_spans(text, size, extra, weights):
                    chunks.append((index, s, e, text[cs:ce]))
            else:
                for s, e in chunk_spans(text, size, extra, weights):
                    chunks.append((index, s, e, text[s:e]))
        embed_texts = [c[3] for c in chunks]
        embed_lengths = [len(x) for x in embed_tokenizer(embed_texts, add_special_tokens=True)["input_ids"]]
        reader_lengths = []
        for index, s, e, _ in chunks:
            words = word_spans(texts[index])
            reader_lengths.append(sum(w for (ws, we), w in zip(words, weights_per_text[index]) if ws >= s and we <= e))
        started = time.perf_counter()
        vectors = model.encode(embed_texts, batch_size=32, normalize_embeddings=True)
        embed_s = time.perf_counter() - started
        scores = query_vectors @ vectors.T
        ks = (1, 3, 5, 10)
        hits = {k: 0 for k in ks}
        chunk_text = np.array([c[0] for c in chunks])
        for row, (_, article, spans) in enumerate(qas):
            top = np.argsort(-scores[row])[: max(ks)]
            found_at = None
            for rank, chunk_index in enumerate(top):
                index, s, e, _ = chunks[chunk_index]
                if index == article and any(s <= a and b <= e for a, b in spans):
                    found_at = rank
                    break
            for k in ks:
                hits[k] += found_at is not None and found_at < k
        del chunk_text
        row = {
            "setting": name,
            "chunks": len(chunks),
            "reader_tokens_mean": round(sum(reader_lengths) / len(chunks), 1),
            "reader_tokens_max": max(reader_lengths),
            "embedded_tokens": sum(min(n, 256) for n in embed_lengths),
            "truncated_share": round(sum(n > 256 for n in embed_lengths) / len(chunks), 3),
            "embed_s": round(embed_s, 1),
            **{f"R@{k}": round(hits[k] / len(qas), 3) for k in ks},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows, ["setting", "chunks", "reader_tokens_mean", "reader_tokens_max", "embedded_tokens",
                       "truncated_share", "embed_s", "R@1", "R@3", "R@5", "R@10"])
    return {"articles": len(texts), "questions": len(qas), "rows": rows}


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print(" | ".join(c.ljust(widths[c]) for c in columns))
    print("-|-".join("-" * widths[c] for c in columns))
    for r in rows:
        print(" | ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


# ---------------------------------------------------------------------------------------------
# speed


def pdf_files(folder: Path) -> list[Path]:
    folder = folder.resolve()
    return sorted(
        p for p in folder.rglob("*.pdf") if not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def recall(search, questions: list[dict], top_k: int, chunk_text, chunk_page, name_of) -> dict:
    """Hit@k: a top-k chunk from the question's file holds the answer text (and, for page@k, on its page)."""
    hits = {k: 0 for k in (1, 5, top_k)}
    page_hits = {k: 0 for k in (1, 5, top_k)}
    for question in questions:
        documents = search(question["question"], top_k)
        answer = normalized(question["answer"])
        found = page_found = None
        for rank, document in enumerate(documents):
            if name_of(document) != question["file"]:
                continue
            if found is None and answer in normalized(chunk_text(document)):
                found = rank
                if chunk_page(document) in question["pages"]:
                    page_found = rank
                    break
        for k in hits:
            hits[k] += found is not None and found < k
            page_hits[k] += page_found is not None and page_found < k
    n = max(1, len(questions))
    return {
        **{f"R@{k}": round(hits[k] / n, 3) for k in sorted(hits)},
        **{f"page R@{k}": round(page_hits[k] / n, 3) for k in sorted(page_hits)},
    }


def run_haystack(files: list[Path], embedder_dir: str, batch_size: int):
    from haystack import Pipeline
    from haystack.components.converters import PyPDFToDocument
    from haystack.components.preprocessors import DocumentSplitter
    from haystack.components.writers import DocumentWriter
    from haystack.document_stores.types import DuplicatePolicy
    from haystack.utils import ComponentDevice
    from haystack_integrations.components.embedders.sentence_transformers import (
        SentenceTransformersDocumentEmbedder,
        SentenceTransformersTextEmbedder,
    )
    from haystack_integrations.document_stores.faiss import FAISSDocumentStore

    started = time.perf_counter()
    store = FAISSDocumentStore(embedding_dim=384)
    embedder = SentenceTransformersDocumentEmbedder(
        model=embedder_dir, device=ComponentDevice.from_str("cpu"), batch_size=batch_size, progress_bar=False,
        normalize_embeddings=True, local_files_only=True,
    )
    # Not warmed up here: loading the model is part of the timed run, as it is on spanqa's side.
    pipeline = Pipeline()
    pipeline.add_component("converter", PyPDFToDocument(store_full_path=True))
    pipeline.add_component("splitter", DocumentSplitter())
    pipeline.add_component("embedder", embedder)
    pipeline.add_component("writer", DocumentWriter(document_store=store, policy=DuplicatePolicy.OVERWRITE))
    pipeline.connect("converter.documents", "splitter.documents")
    pipeline.connect("splitter.documents", "embedder.documents")
    pipeline.connect("embedder.documents", "writer.documents")
    result = pipeline.run({"converter": {"sources": [str(f) for f in files]}}, include_outputs_from={"converter"})
    seconds = time.perf_counter() - started
    # Pages of the files that gave text (the same count spanqa reports for the files it indexed).
    from pypdf import PdfReader

    with_text = [doc for doc in result["converter"]["documents"] if doc.content and doc.content.strip()]
    pages = sum(len(PdfReader(doc.meta["file_path"]).pages) for doc in with_text)
    chunks = store.count_documents()

    text_embedder = SentenceTransformersTextEmbedder(
        model=embedder_dir, device=ComponentDevice.from_str("cpu"), progress_bar=False, normalize_embeddings=True,
        local_files_only=True,
    )
    text_embedder.warm_up()

    def search(question: str, top_k: int):
        vector = text_embedder.run(question)["embedding"]
        return store.search(vector, top_k=top_k)

    return {"seconds": seconds, "pages": pages, "chunks": chunks, "files": len(with_text)}, search


def run_spanqa(files: list[Path], embedder_dir: str, reader_dir: str, index_dir: Path, workers: int | None, ocr: str):
    from spanqa.pipelines.api import DocumentQA

    qa = DocumentQA(index_dir, embedder=embedder_dir, reader=reader_dir, device="cpu")
    started = time.perf_counter()
    report = qa.index([str(f) for f in files], workers=workers, ocr=ocr)
    seconds = time.perf_counter() - started
    pages = sum(f.pages for f in report.indexed)

    def search(question: str, top_k: int):
        return qa.search(question, top_k=top_k)

    return {
        "seconds": seconds, "pages": pages, "chunks": report.chunk_count, "files": len(report.indexed),
        "skipped": {Path(s.source).name: s.reason for s in report.skipped},
    }, search


def run_parse_stage(files: list[Path], tokenizer_dir: str, workers: int | None, embedder_dir: str) -> dict:
    """Parsing alone (no embedding): Haystack's converter + splitter in this process vs spanqa's workers."""
    from haystack.components.converters import PyPDFToDocument
    from haystack.components.preprocessors import DocumentSplitter

    from spanqa.indexing.ingest.parsing import ChunkSettings, ParseTask
    from spanqa.indexing.ingest.workers import ParsePool
    from spanqa.settings import EmbedderSettings

    started = time.perf_counter()
    documents = PyPDFToDocument().run(sources=[str(f) for f in files])["documents"]
    haystack_split = DocumentSplitter().run(documents=documents)["documents"]
    haystack_s = time.perf_counter() - started
    haystack_chunks = len(haystack_split)
    settings = ChunkSettings(tokenizer=tokenizer_dir, tokenizer_file=str(Path(tokenizer_dir) / "tokenizer.json"))
    started = time.perf_counter()
    parsed = ParsePool(workers=workers).map([ParseTask(str(f), chunking=settings) for f in files])
    spanqa_s = time.perf_counter() - started
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedder_dir)

    def embedded_tokens(texts: list[str], most: int) -> int:
        # What the embedder reads: at most `most` word pieces of each text.
        return sum(min(most, len(ids)) for ids in tokenizer(texts)["input_ids"]) if texts else 0

    return {
        "haystack_parse_s": round(haystack_s, 2), "haystack_parse_chunks": haystack_chunks,
        "spanqa_parse_s": round(spanqa_s, 2), "spanqa_parse_chunks": sum(len(p.chunks) for p in parsed),
        "parse_speedup": round(haystack_s / spanqa_s, 2),
        # all-MiniLM-L6-v2 reads 256 word pieces; spanqa's embedder reads EmbedderSettings.embed_max_tokens.
        "haystack_embedded_tokens": embedded_tokens([d.content for d in haystack_split if d.content], 256),
        "spanqa_embedded_tokens": embedded_tokens(
            [c.embed_text for p in parsed for c in p.chunks], EmbedderSettings.embed_max_tokens or 256
        ),
    }


def prepare_int8_embedder(embedder_dir: str) -> float:
    """Exports and quantises the embedder into spanqa's cache unless it is there: a one-time cost per
    model and machine (like a hub download, which neither side's timing includes). Returns its seconds."""
    from spanqa.indexing.retrieval.embedding import cache_directory, quantised_model_path, read_sentence_model_layout

    started = time.perf_counter()
    path = quantised_model_path(read_sentence_model_layout(embedder_dir), cache_directory())
    seconds = round(time.perf_counter() - started, 2)
    print(f"int8 embedder: {path} ({'exported now in ' + str(seconds) + ' s' if seconds > 1 else 'cached'})", flush=True)
    return seconds


def run_side(side: str, files: list[Path], args, questions: list[dict] | None, results: dict) -> float:
    """Indexes `files` with one side; its figures (and recall, given questions) go into results[side]."""
    import tempfile

    if side == "haystack":
        from haystack_integrations.components.embedders.sentence_transformers.embedding_backend.backend import (
            _SentenceTransformersEmbeddingBackendFactory,
        )

        # Haystack keeps loaded models across runs in one process: each run must load its own, as spanqa does.
        _SentenceTransformersEmbeddingBackendFactory._instances.clear()
        figures, search = run_haystack(files, args.embedder, 32)
        if questions is not None:
            figures.update(recall(
                search, questions, 10,
                chunk_text=lambda d: d.content,
                chunk_page=lambda d: d.meta.get("page_number"),
                name_of=lambda d: Path(d.meta.get("file_path", "")).name,
            ))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            figures, search = run_spanqa(files, args.embedder, args.tokenizer, Path(tmp) / "index", args.workers, args.ocr)
            if questions is not None:
                figures.update(recall(
                    search, questions, 10,
                    chunk_text=lambda p: p.text,
                    chunk_page=lambda p: p.page,
                    name_of=lambda p: Path(p.source).name,
                ))
    if questions is not None:
        results[side] = figures
    return figures["seconds"]


def run_speed(args) -> dict:
    import torch

    files = pdf_files(Path(args.pdfs))
    if args.limit:
        files = files[: args.limit]
    questions = json.loads(QUESTIONS_FILE.read_text(encoding="utf-8"))
    names = {f.name for f in files}
    questions = [q for q in questions if q["file"] in names]
    print(f"{len(files)} PDFs, {len(questions)} questions, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    results: dict = {"int8_export_s": prepare_int8_embedder(args.embedder), "runs": []}
    first = ["haystack", "spanqa"] if not args.spanqa_first else ["spanqa", "haystack"]
    for repeat in range(args.repeats):
        # Sides alternate which goes first, so a drift in the machine's speed hits both alike.
        order = first if repeat % 2 == 0 else first[::-1]
        seconds = {}
        for side in order:
            # Recall once: every run builds the same index.
            seconds[side] = run_side(side, files, args, questions if repeat == 0 else None, results)
            print(f"run {repeat + 1}/{args.repeats} {side}: {seconds[side]:.2f} s", flush=True)
        results["runs"].append({**seconds, "ratio": round(seconds["haystack"] / seconds["spanqa"], 3)})
    for side in ("haystack", "spanqa"):
        figures = results[side]
        figures["seconds"] = round(statistics.median(run[side] for run in results["runs"]), 2)
        figures["pages_per_s"] = round(figures["pages"] / figures["seconds"], 2)
        figures["chunks_per_s"] = round(figures["chunks"] / figures["seconds"], 2)
        print(f"{side}: " + json.dumps({k: v for k, v in figures.items() if k != "skipped"}), flush=True)
    results["parse_stage"] = run_parse_stage(files, args.tokenizer, args.workers, args.embedder)
    print("parsing stage only: " + json.dumps(results["parse_stage"]), flush=True)
    ratios = [run["ratio"] for run in results["runs"]]
    ratio = statistics.median(ratios)
    results["speedup"] = round(ratio, 2)
    results["load_average_end"] = round(os.getloadavg()[0], 2)
    rows = [{"side": side, **{k: v for k, v in results[side].items() if k != "skipped"}} for side in ("haystack", "spanqa")]
    print_table(rows, ["side", "files", "pages", "chunks", "seconds", "pages_per_s", "chunks_per_s",
                       "R@1", "R@5", "R@10", "page R@1", "page R@5", "page R@10"])
    print(f"speed-up (Haystack seconds / spanqa seconds, median of {len(ratios)} paired runs): {ratio:.2f}x "
          f"(runs: {', '.join(f'{r:.2f}' for r in ratios)}); load average at the end {results['load_average_end']}")
    return results


def run_embedder(args) -> dict:
    """The embedder alone on spanqa's chunks of the PDFs: sentence-transformers (float32, torch) vs
    spanqa's int8 embedder, same texts, same word-piece cut, same threads, runs alternating."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from spanqa.indexing.ingest.parsing import ChunkSettings, ParseTask
    from spanqa.indexing.ingest.workers import ParsePool
    from spanqa.indexing.retrieval.embedding import Int8SentenceEncoder
    from spanqa.settings import EmbedderSettings

    settings = ChunkSettings(tokenizer=args.tokenizer, tokenizer_file=str(Path(args.tokenizer) / "tokenizer.json"))
    parsed = ParsePool().map([ParseTask(str(f), chunking=settings) for f in pdf_files(Path(args.pdfs))])
    texts = [chunk.embed_text for item in parsed for chunk in (item.chunks or [])]
    cut = args.max_tokens
    exact = SentenceTransformer(args.embedder, device="cpu")
    exact.max_seq_length = cut
    fast = Int8SentenceEncoder(args.embedder, max_tokens=cut)
    pieces = sum(len(ids) for ids in fast.tokenizer(texts, truncation=True, max_length=cut)["input_ids"])
    seconds: dict[str, list[float]] = {"float32": [], "int8": []}
    vectors = {}
    for _ in range(args.repeats):
        started = time.perf_counter()
        vectors["float32"] = exact.encode(texts, batch_size=EmbedderSettings.embedder_batch_size, normalize_embeddings=True)
        seconds["float32"].append(time.perf_counter() - started)
        started = time.perf_counter()
        vectors["int8"] = fast.encode(texts)
        seconds["int8"].append(time.perf_counter() - started)
    cosines = (np.asarray(vectors["float32"]) * vectors["int8"]).sum(axis=1)
    figures = {
        "texts": len(texts), "word_pieces": pieces, "max_tokens": cut, "threads": torch.get_num_threads(),
        **{f"{name}_s": round(statistics.median(times), 2) for name, times in seconds.items()},
        **{f"{name}_word_pieces_per_s": round(pieces / statistics.median(times)) for name, times in seconds.items()},
        "speedup": round(statistics.median(seconds["float32"]) / statistics.median(seconds["int8"]), 2),
        "cosine_min": round(float(cosines.min()), 4), "cosine_mean": round(float(cosines.mean()), 4),
    }
    print(json.dumps(figures), flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    speed = commands.add_parser("speed", help="spanqa indexing vs the plain Haystack chain on the same PDFs")
    speed.add_argument("--pdfs", required=True)
    speed.add_argument("--embedder", required=True, help="local sentence-transformers model directory")
    speed.add_argument("--tokenizer", required=True, help="reader model directory (tokenizer.json) for chunk sizes")
    speed.add_argument("--workers", type=int, default=None, help="spanqa parse workers (default: spanqa's)")
    speed.add_argument("--limit", type=int, default=0, help="only the first N PDFs (a quick check)")
    speed.add_argument("--spanqa-first", action="store_true", help="run spanqa before Haystack")
    # The chain has no OCR: with it on, spanqa would also read the scans the chain indexes as empty.
    speed.add_argument("--ocr", default="off", help="spanqa's OCR of scanned pages (default: off, the chain's work)")
    speed.add_argument("--repeats", type=int, default=3,
                       help="paired runs (sides alternating first); seconds and the ratio are medians (default: 3)")
    embedder = commands.add_parser("embedder", help="the int8 embedder vs sentence-transformers on spanqa's chunks")
    embedder.add_argument("--pdfs", required=True)
    embedder.add_argument("--embedder", required=True, help="local sentence-transformers model directory")
    embedder.add_argument("--tokenizer", required=True, help="reader model directory (tokenizer.json) for chunk sizes")
    embedder.add_argument("--max-tokens", type=int, default=96, help="word pieces each text is cut to (default: 96)")
    embedder.add_argument("--repeats", type=int, default=2)
    sizes = commands.add_parser("chunk-sizes", help="retrieval recall of chunk settings on SQuAD")
    sizes.add_argument("--squad", required=True)
    sizes.add_argument("--embedder", required=True)
    sizes.add_argument("--tokenizer", required=True)
    sizes.add_argument("--articles", type=int, default=8)
    sizes.add_argument("--questions", type=int, default=800)
    sizes.add_argument("--seed", type=int, default=0)
    sizes.add_argument("--only", nargs="*", help="settings whose name contains one of these")
    for sub in (speed, embedder, sizes):
        sub.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    logging.getLogger("haystack").setLevel(logging.ERROR)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
    except ImportError:
        pass
    figures = {"speed": run_speed, "embedder": run_embedder, "chunk-sizes": run_chunk_sizes}[args.command](args)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
